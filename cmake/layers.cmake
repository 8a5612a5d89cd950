# The layers of docs/design.md, enforced by the build.
#
# sq_layer(NAME BELOW <lower layer or "">  HEADERS <public headers>
#          SOURCES <sources>)
#
# Each layer is an OBJECT library sq_<NAME> (position-independent, for
# the shared library) that sees:
#  - its own sources' folder src/<NAME>/ (private headers),
#  - its exported internal headers src/<NAME>/include/sq_<NAME>/ (for the
#    layers above),
#  - its own public headers, and those of the layers below, staged as
#    symbolic links in <build>/layers/<NAME>/squirrel/: a lower layer that
#    includes a higher layer's public header does not compile,
#  - the usage requirements of the layer just below (and so of all below).
# Unless built with a sanitizer (whose runtime a shared object does not
# carry), each layer is also linked into a shared object of its own,
# <build>/layers/libsq-layer-<NAME>.so, against the layer below's with
# --no-undefined: a call from a layer into one above it fails the build.
set(SQ_LAYER_ROOT ${CMAKE_BINARY_DIR}/layers)
set(SQ_ALL_PUBLIC_HEADERS "")
set(SQ_ALL_LAYERS "")

function(sq_layer name)
  cmake_parse_arguments(L "" "BELOW" "HEADERS;SOURCES" ${ARGN})
  set(stage ${SQ_LAYER_ROOT}/${name})
  file(MAKE_DIRECTORY ${stage}/squirrel)
  foreach(h ${L_HEADERS})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/include/squirrel/${h}
         ${stage}/squirrel/${h} SYMBOLIC)
    list(APPEND SQ_ALL_PUBLIC_HEADERS ${PROJECT_SOURCE_DIR}/include/squirrel/${h})
  endforeach()
  set(SQ_ALL_PUBLIC_HEADERS ${SQ_ALL_PUBLIC_HEADERS} PARENT_SCOPE)

  add_library(sq_${name} OBJECT ${L_SOURCES})
  set_target_properties(sq_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(sq_${name}
    PUBLIC ${stage}
    PRIVATE ${PROJECT_SOURCE_DIR}/src/${name})
  if(EXISTS ${PROJECT_SOURCE_DIR}/src/${name}/include)
    target_include_directories(sq_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src/${name}/include)
  endif()
  if(L_BELOW)
    target_link_libraries(sq_${name} PUBLIC sq_${L_BELOW})
  else()
    target_link_libraries(sq_${name} PUBLIC Threads::Threads)
  endif()

  if(SQ_SANITIZE STREQUAL "")
    add_library(sq_${name}_layer SHARED $<TARGET_OBJECTS:sq_${name}>)
    set_target_properties(sq_${name}_layer PROPERTIES
      OUTPUT_NAME sq-layer-${name}
      LIBRARY_OUTPUT_DIRECTORY ${SQ_LAYER_ROOT})
    target_link_options(sq_${name}_layer PRIVATE "LINKER:--no-undefined")
    if(L_BELOW)
      target_link_libraries(sq_${name}_layer PUBLIC sq_${L_BELOW}_layer)
    endif()
    target_link_libraries(sq_${name}_layer PRIVATE Threads::Threads ${CMAKE_DL_LIBS})
  endif()
  set(SQ_ALL_LAYERS ${SQ_ALL_LAYERS} ${name} PARENT_SCOPE)
endfunction()
