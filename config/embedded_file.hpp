#pragma once
// A file compiled into the binary by cmake/embed_files.cmake (migrations, demo data, openapi.yaml).

#include <string_view>
#include <vector>

namespace mercato {

struct embedded_file {
  std::string_view name;
  std::string_view content;
};

}  // namespace mercato
