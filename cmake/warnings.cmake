function(mercato_apply_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(MERCATO_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Embeds files into a generated source added to `target`; FUNCTION names the accessor.
function(mercato_embed target function)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${function}.cpp")
  add_custom_command(OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${out} -DFUNCTION=${function} "-DFILES=${ARGN}"
            -P "${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake"
    DEPENDS ${ARGN} "${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake"
    COMMENT "Embedding ${function}" VERBATIM)
  target_sources(${target} PRIVATE "${out}")
  # The embedded text is one long literal; clang's -Wpedantic warns past 64 KiB (GCC does not).
  set_source_files_properties("${out}" PROPERTIES COMPILE_OPTIONS "-Wno-overlength-strings")
endfunction()
