#include "app/admin_command.hpp"

#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <pqxx/pqxx>

#include "config/settings.hpp"
#include "persistence/migrations.hpp"
#include "persistence/user_store.hpp"
#include "security/password.hpp"

namespace mercato::app {

bool is_admin_command(int argc, const char* const* argv) {
  return argc >= 2 && std::string(argv[1]) == "admin";
}

int run_admin_command(int argc, const char* const* argv) {
  CLI::App app{"mercatod admin: manage administrator accounts", "mercatod admin"};
  app.require_subcommand(1);
  auto* create = app.add_subcommand("create", "create the admin account, or make an existing account admin");
  std::string email;
  std::string name = "Administrator";
  bool password_stdin = false;
  create->add_option("--email", email, "the admin's email address")->required();
  create->add_option("--name", name, "display name");
  create->add_flag("--password-stdin", password_stdin, "read the password from standard input (one line)")->required();
  // Everything else is a setting (--pg-dsn, --config, ...), handed to the settings loader.
  create->allow_extras(true);
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  std::vector<std::string> rest{"mercatod"};
  for (const auto& extra : create->remaining()) {
    rest.push_back(extra);
  }
  std::vector<const char*> rest_argv;
  for (const auto& s : rest) {
    rest_argv.push_back(s.c_str());
  }
  auto loaded = config::load(static_cast<int>(rest_argv.size()), rest_argv.data(), config::process_environment());
  if (!loaded.errors.empty() || !loaded.value) {
    for (const auto& e : loaded.errors) {
      std::cerr << e.to_string() << '\n';
    }
    return 2;
  }

  const auto normalized = security::normalize_email(email);
  if (!normalized) {
    std::cerr << "--email: not a valid email address: " << email << '\n';
    return 2;
  }
  std::string password;
  if (!std::getline(std::cin, password)) {
    std::cerr << "--password-stdin: no password on standard input\n";
    return 2;
  }
  if (!password.empty() && password.back() == '\r') {
    password.pop_back();
  }
  if (auto why = security::password_problem(password, *normalized)) {
    std::cerr << "password: " << *why << '\n';
    return 2;
  }
  try {
    pqxx::connection conn{loaded.value->postgres.dsn};
    persistence::apply_migrations(conn, persistence::bundled_migrations());
    auto user = persistence::user_store::ensure_admin(conn, *normalized, name, security::hash_password(password));
    std::cout << "admin " << user.email << " ready (id " << user.id << ")\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "admin create failed: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace mercato::app
