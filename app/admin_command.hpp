#pragma once
// `mercatod admin create --email <address> [--name <name>] --password-stdin [settings flags...]`:
// creates the initial admin (or gives an existing account the admin role and this password) in the
// configured database, applying migrations first, then exits. The password is read from standard
// input so that it shows up neither in the process list nor in shell history.

namespace mercato::app {

// True when argv asks for an admin command.
bool is_admin_command(int argc, const char* const* argv);

// Runs it; returns the process exit code (0 done, 1 failed, 2 usage or settings error).
int run_admin_command(int argc, const char* const* argv);

}  // namespace mercato::app
