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
sq_layer(server BELOW proto SOURCES ${SQ_SERVER_SOURCES})
target_link_libraries(sq_server PUBLIC OpenSSL::Crypto m)
if(TARGET sq_server_layer)
  target_link_libraries(sq_server_layer PRIVATE OpenSSL::Crypto m)
endif()

add_library(sq_server_core STATIC $<TARGET_OBJECTS:sq_proto> $<TARGET_OBJECTS:sq_server>)
# What a user of the core sees: the public headers and every layer's
# exported internal headers (not the object libraries themselves, whose
# objects are in the archive already).
set(SQ_CORE_INCLUDES ${PROJECT_SOURCE_DIR}/include)
foreach(layer base runtime proto server)
  list(APPEND SQ_CORE_INCLUDES ${PROJECT_SOURCE_DIR}/src/${layer}/include)
endforeach()
target_include_directories(sq_server_core PUBLIC ${SQ_CORE_INCLUDES})
target_link_libraries(sq_server_core PUBLIC sq_llhttp PkgConfig::JANSSON
                      OpenSSL::Crypto Threads::Threads m)

# The base layer as an archive of its own, for programs that link the
# shared libsquirrel.so (which keeps its sq__ names to itself).
add_library(sq_base_static STATIC $<TARGET_OBJECTS:sq_base>)
