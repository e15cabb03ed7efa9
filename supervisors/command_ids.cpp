#include <string>
#include <vector>

#include "supervisors/entity.hpp"

namespace mercato::supervisors {

bool storable_command_id(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  for (unsigned char c : id) {
    if (c <= 0x20 || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> split_commands(const std::string& joined) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < joined.size()) {
    auto end = joined.find(' ', start);
    if (end == std::string::npos) {
      end = joined.size();
    }
    if (end > start) {
      out.emplace_back(joined, start, end - start);
    }
    start = end + 1;
  }
  return out;
}

std::string join_commands(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) {
    if (!out.empty()) {
      out.push_back(' ');
    }
    out += id;
  }
  return out;
}

}  // namespace mercato::supervisors
