#pragma once
// The blocklist part of the password policy (NIST SP 800-63B §5.1.1.2): a new password is compared
// against commonly used passwords, trivial patterns and context-specific words. Pure functions.

#include <optional>
#include <string>
#include <string_view>

namespace mercato::security {

// Why `pw` is too easy to guess, as a message for the client naming the rule, or nullopt. Checks, on the
// ASCII-lower-cased password:
//  - context: it contains the service's name ("mercato") or the local part of `email` (when that has 4 or
//    more characters);
//  - common: it is in the list of common passwords compiled into the binary (security/common_passwords.txt),
//    also after dropping trailing digits and symbols ("Password123!" is "password");
//  - trivial patterns: one character repeated, a block of up to 4 characters repeated ("abcabcab"), a run of
//    consecutive characters ("abcdefgh", "98765432"), or a stretch of a keyboard row ("poiuytrewq").
std::optional<std::string> password_weakness(std::string_view pw, std::string_view email);

// True when `lower_case` is in the common-password list (exposed for tests).
bool is_common_password(std::string_view lower_case);

}  // namespace mercato::security
