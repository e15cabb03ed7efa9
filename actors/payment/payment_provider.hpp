#pragma once
// What a payment provider does for mercato, as a real one would implement it: authorize, capture,
// void, refund, each idempotent by a key the payment entity derives (payment_model::provider_key): a
// call repeated with its key answers what the first answered and never charges again. Calls answer
// through `done`, exactly once, on any thread; they never block the caller. The checkout saga bounds
// each call with the configured provider timeout. Capture, void and refund name the authorization by
// the idempotency key of its authorize call, so even an authorization whose answer never arrived (a
// timeout) can be voided.

#include <cstdint>
#include <functional>
#include <string>

namespace mercato::actors {

struct provider_answer {
  bool approved = false;
  std::string reference;     // the provider's id of the authorization (authorize), or of the operation
  std::string decline_code;  // when not approved: card_declined, insufficient_funds, invalid_token, ...
};

class payment_provider {
 public:
  using callback = std::function<void(provider_answer)>;
  virtual ~payment_provider() = default;

  virtual std::string name() const = 0;
  virtual void authorize(const std::string& key, std::int64_t amount, const std::string& currency,
                         const std::string& card_token, callback done) = 0;
  virtual void capture(const std::string& key, const std::string& authorize_key, std::int64_t amount,
                       callback done) = 0;
  virtual void void_authorization(const std::string& key, const std::string& authorize_key, callback done) = 0;
  virtual void refund(const std::string& key, const std::string& authorize_key, std::int64_t amount,
                      callback done) = 0;
};

}  // namespace mercato::actors
