# MERCATO_SANITIZE="address;undefined" or "thread": applied to every target of the build.
if(MERCATO_SANITIZE)
  list(JOIN MERCATO_SANITIZE "," _mercato_san)
  if(_mercato_san MATCHES "thread" AND _mercato_san MATCHES "address")
    message(FATAL_ERROR "MERCATO_SANITIZE: thread and address cannot be combined")
  endif()
  add_compile_options(-fsanitize=${_mercato_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_mercato_san})
  # GCC 12 reports -Wmaybe-uninitialized false positives inside libstdc++ (std::regex, std::function)
  # when instrumenting; the normal build keeps the warning (and -Werror) on.
  add_compile_options(-Wno-maybe-uninitialized)
  if(_mercato_san MATCHES "thread")
    # Boost.Asio uses std::atomic_thread_fence, which TSan does not model; GCC 12 warns (-Wtsan) on every
    # use. The fences sit next to atomics TSan does see, so the warning is noise for this build.
    add_compile_options(-Wno-tsan)
  endif()
  message(STATUS "mercato: sanitizers ${_mercato_san}")
endif()
