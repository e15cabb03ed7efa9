#include "security/password_strength.hpp"

#include <array>
#include <cctype>
#include <unordered_set>
#include <vector>

#include "config/embedded_file.hpp"

namespace mercato {
const std::vector<embedded_file>& bundled_common_passwords();
}

namespace mercato::security {
namespace {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// The list, parsed once: views into the embedded file.
const std::unordered_set<std::string_view>& common_passwords() {
  static const std::unordered_set<std::string_view> set = [] {
    std::unordered_set<std::string_view> out;
    const auto text = bundled_common_passwords().front().content;
    std::size_t start = 0;
    while (start < text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string_view::npos) {
        end = text.size();
      }
      const auto line = text.substr(start, end - start);
      if (!line.empty() && line.front() != '#') {
        out.insert(line);
      }
      start = end + 1;
    }
    return out;
  }();
  return set;
}

bool repeats_block(const std::string& s) {
  for (std::size_t period = 1; period <= 4 && period < s.size(); ++period) {
    bool same = true;
    for (std::size_t i = period; i < s.size() && same; ++i) {
      same = s[i] == s[i - period];
    }
    if (same) {
      return true;
    }
  }
  return false;
}

bool is_run(const std::string& s) {
  for (int step : {1, -1}) {
    bool run = true;
    for (std::size_t i = 1; i < s.size() && run; ++i) {
      run = s[i] - s[i - 1] == step;
    }
    if (run) {
      return true;
    }
  }
  return false;
}

bool on_keyboard_row(const std::string& s) {
  static const std::array<std::string_view, 6> rows{"1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./",
                                                     "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
                                                     "qazwsxedcrfvtgbyhnujmik,ol.p;/"};
  for (auto row : rows) {
    std::string reversed(row.rbegin(), row.rend());
    if (row.find(s) != std::string_view::npos || reversed.find(s) != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool is_common_password(std::string_view lower_case) { return common_passwords().count(lower_case) > 0; }

std::optional<std::string> password_weakness(std::string_view pw, std::string_view email) {
  const auto lower = ascii_lower(pw);
  if (lower.find("mercato") != std::string::npos) {
    return "password must not contain the name of this service";
  }
  const auto at = email.find('@');
  if (at != std::string_view::npos && at >= 4 && lower.find(ascii_lower(email.substr(0, at))) != std::string::npos) {
    return "password must not contain the name part of your email address";
  }
  auto stem = lower;
  while (!stem.empty() && !std::isalpha(static_cast<unsigned char>(stem.back())) &&
         static_cast<unsigned char>(stem.back()) < 0x80 && stem.back() != ' ') {
    stem.pop_back();
  }
  if (is_common_password(lower) || (stem.size() >= 4 && is_common_password(stem))) {
    return "password is in a list of commonly used passwords; choose one that is harder to guess "
           "(a few unrelated words work well)";
  }
  if (repeats_block(lower) || is_run(lower) || on_keyboard_row(lower)) {
    return "password is a trivial pattern (a repeated character or block, a run such as abcdef or 98765, or a "
           "keyboard row); choose one that is harder to guess";
  }
  return std::nullopt;
}

}  // namespace mercato::security
