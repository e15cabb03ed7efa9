# MERCATO_BUILD_FUZZ=ON: every target of the build is instrumented for libFuzzer (coverage, no main)
# with ASan+UBSan; the fuzz targets themselves link -fsanitize=fuzzer (tests/fuzz/CMakeLists.txt).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MERCATO_BUILD_FUZZ needs clang (e.g. -DCMAKE_CXX_COMPILER=clang++-15); "
                      "this build uses ${CMAKE_CXX_COMPILER_ID}")
endif()
if(MERCATO_SANITIZE)
  message(FATAL_ERROR "MERCATO_BUILD_FUZZ brings its own sanitizers (address,undefined); leave MERCATO_SANITIZE empty")
endif()
# -O0 with line tables only: about half the compile time of -O1 on CI's two cores (the instrumented
# build of the HTTP edge is the slowest part of a cold CI run), and stack traces with lines. Fewer
# executions per second than -O1, which only shortens the exploration after each corpus replay.
# No NDEBUG: the product's assertions are checks the fuzzer should reach too.
set(CMAKE_CXX_FLAGS_RELWITHDEBINFO "-O0 -gline-tables-only")
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
message(STATUS "mercato: fuzz build (libFuzzer, address, undefined)")
