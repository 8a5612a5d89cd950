# squirreld's layers, above the toolkit (docs/layers.md):
#   proto   wire formats over sq_io, nothing about MCP: HTTP/1.1 (llhttp),
#           server-sent events, newline-delimited framing, JSON-RPC
#           (jansson)
#   server  squirreld as a library: the MCP protocol handler, sessions,
#           transports, registry, components
# They are linked into one static library, sq_server_core, which programs
# (squirreld, the server tests) link together with the toolkit: squirreld
# with the shared libsquirrel.so (one runtime for it and its plugins) plus
# the base helpers (sq_base_static: internal, not exported by the .so),
# the tests with the static libsquirrel.a (which holds the base layer).

find_package(PkgConfig REQUIRED)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
# The context manager's default store (src/server/store/sqlite.c): Debian's
# libsqlite3-dev.
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
# The shared store (src/server/store/postgres.c): Debian's libpq-dev.
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)

# llhttp: Debian's node-llhttp ships its C sources; compiled here, as a
# third-party library (its own warnings are not ours).
set(SQ_LLHTTP_DIR /usr/share/llhttp CACHE PATH "llhttp C sources (node-llhttp)")
set(SQ_LLHTTP_INCLUDE /usr/share/include/llhttp CACHE PATH "llhttp.h (node-llhttp)")
if(NOT EXISTS ${SQ_LLHTTP_DIR}/llhttp.c OR NOT EXISTS ${SQ_LLHTTP_INCLUDE}/llhttp.h)
  message(FATAL_ERROR "llhttp sources not found in ${SQ_LLHTTP_DIR}: install Debian's node-llhttp (scripts/deps does)")
endif()
add_library(sq_llhttp STATIC ${SQ_LLHTTP_DIR}/llhttp.c ${SQ_LLHTTP_DIR}/api.c ${SQ_LLHTTP_DIR}/http.c)
target_include_directories(sq_llhttp SYSTEM PUBLIC ${SQ_LLHTTP_INCLUDE})
set_target_properties(sq_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON C_STANDARD 99)
target_compile_options(sq_llhttp PRIVATE -w)
# llhttp.c holds two parsers; the strict one refuses what the lenient one
# lets through and a server must not: chunk data not followed by CRLF
# (request smuggling), whitespace before a header's colon, bytes after a
# "Connection: close" request.
target_compile_definitions(sq_llhttp PRIVATE LLHTTP_STRICT_MODE=1)

file(GLOB SQ_PROTO_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/proto/*.c)
sq_layer(proto BELOW patterns SOURCES ${SQ_PROTO_SOURCES})
target_link_libraries(sq_proto PUBLIC sq_llhttp PkgConfig::JANSSON)
if(TARGET sq_proto_layer)
  target_link_libraries(sq_proto_layer PUBLIC sq_llhttp PkgConfig::JANSSON)
endif()

file(GLOB_RECURSE SQ_SERVER_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/server/*.c)
if(NOT SQ_SERVER_SOURCES)
  # The server layer is being written: until it has sources, only proto.
  add_library(sq_server_core STATIC $<TARGET_OBJECTS:sq_proto>)
  target_include_directories(sq_server_core PUBLIC ${PROJECT_SOURCE_DIR}/include
    ${PROJECT_SOURCE_DIR}/src/base/include ${PROJECT_SOURCE_DIR}/src/proto/include)
  target_link_libraries(sq_server_core PUBLIC sq_llhttp PkgConfig::JANSSON Threads::Threads m)
  add_library(sq_base_static STATIC $<TARGET_OBJECTS:sq_base>)
  return()
endif()
# squirrel/plugin.h, the plugins' ABI, is the server layer's public header
# (installed with the toolkit's: a plugin is built against both).
sq_layer(server BELOW proto HEADERS plugin.h SOURCES ${SQ_SERVER_SOURCES})
install(FILES ${PROJECT_SOURCE_DIR}/include/squirrel/plugin.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/squirrel)
# The console's files (src/server/console/), embedded as C arrays at
# build time: squirreld serves them itself, nothing comes from elsewhere.
file(GLOB SQ_CONSOLE_FILES CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR}/src/server/console
     ${PROJECT_SOURCE_DIR}/src/server/console/*)
list(SORT SQ_CONSOLE_FILES)
set(SQ_CONSOLE_DEPS "")
foreach(f ${SQ_CONSOLE_FILES})
  list(APPEND SQ_CONSOLE_DEPS ${PROJECT_SOURCE_DIR}/src/server/console/${f})
endforeach()
set(SQ_CONSOLE_C ${CMAKE_BINARY_DIR}/generated/console_assets.c)
string(REPLACE ";" "," SQ_CONSOLE_NAMES "${SQ_CONSOLE_FILES}")
add_custom_command(OUTPUT ${SQ_CONSOLE_C}
  COMMAND ${CMAKE_COMMAND} -DOUT=${SQ_CONSOLE_C} -DDIR=${PROJECT_SOURCE_DIR}/src/server/console
          "-DNAMES=${SQ_CONSOLE_NAMES}" -P ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
  DEPENDS ${SQ_CONSOLE_DEPS} ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
  COMMENT "Embedding the console's files"
  VERBATIM)
target_sources(sq_server PRIVATE ${SQ_CONSOLE_C})
target_link_libraries(sq_server PUBLIC OpenSSL::Crypto PkgConfig::SQLITE3 PkgConfig::LIBPQ m)
if(TARGET sq_server_layer)
  target_link_libraries(sq_server_layer PRIVATE OpenSSL::Crypto PkgConfig::SQLITE3 PkgConfig::LIBPQ m)
endif()

add_library(sq_server_core STATIC $<TARGET_OBJECTS:sq_proto> $<TARGET_OBJECTS:sq_server>)
# What a user of the core sees: the public headers and every layer's
# exported internal headers (not the object libraries themselves, whose
# objects are in the archive already).
set(SQ_CORE_INCLUDES ${PROJECT_SOURCE_DIR}/include)
foreach(layer base runtime proto server)
  list(APPEND SQ_CORE_INCLUDES ${PROJECT_SOURCE_DIR}/src/${layer}/include)
endforeach()
# The store interface (src/server/store/store.h) too: a backend's tests
# (tests/server/store_*_test.c) drive it directly.
target_include_directories(sq_server_core PUBLIC ${SQ_CORE_INCLUDES}
                           ${PROJECT_SOURCE_DIR}/src/server/store)
target_link_libraries(sq_server_core PUBLIC sq_llhttp PkgConfig::JANSSON
                      OpenSSL::Crypto PkgConfig::SQLITE3 PkgConfig::LIBPQ Threads::Threads m)

# The base layer as an archive of its own, for programs that link the
# shared libsquirrel.so (which keeps its sq__ names to itself).
add_library(sq_base_static STATIC $<TARGET_OBJECTS:sq_base>)

# The function that builds a plugin of squirreld (docs/plugins.md):
# a shared object (no "lib" prefix) in <build>/plugins/, linked against
# the shared libsquirrel.so that squirreld uses (one runtime per process)
# and jansson.  Also used by the example plugins (examples/plugins/) and the tests' (tests/server/plugins/).
function(sq_add_plugin target)
  cmake_parse_arguments(P "" "OUTPUT" "SOURCES;DEFINES" ${ARGN})
  add_library(${target} MODULE ${P_SOURCES})
  set_target_properties(${target} PROPERTIES PREFIX ""
    OUTPUT_NAME ${P_OUTPUT}
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/plugins
    C_VISIBILITY_PRESET hidden)
  target_compile_definitions(${target} PRIVATE ${P_DEFINES})
  # sq_proto/jansson.h: jansson with thread-safe reference counts.
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src/proto/include)
  target_link_libraries(${target} PRIVATE squirrel_shared PkgConfig::JANSSON)
endfunction()

