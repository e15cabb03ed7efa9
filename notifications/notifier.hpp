#pragma once
// What a notification is and where it goes. The outbox handlers (notifications/order_notifications) decide
// who is told what; a notifier delivers it. The default, pg_notifier, stores it for GET /me/notifications and
// logs it; an email (SMTP) or push notifier can sit behind the same interface later, alone or next to it.

#include <string>
#include <vector>

namespace mercato::notifications {

struct notification {
  std::string user_id;          // the recipient (UUID)
  std::string kind;             // order_confirmation, vendor_new_order, order_shipped, refund_issued
  std::string title;            // one line, at most 200 characters
  std::string body;             // plain text, may be empty
  std::string data_json;        // JSON object text: kind-specific details (order id, amounts in minor units)
  std::string source_event_id;  // the outbox event it came from: (user, source event, kind) is delivered once
};

class notifier {
 public:
  virtual ~notifier() = default;

  // Delivers `n`, at most once per (user_id, source_event_id, kind) however often it is called (delivery of
  // the events is at least once). Throws when it could not; the caller retries. Blocking.
  virtual void notify(const notification& n) = 0;

  // The same for several: the outbox handlers hand over a batch's notifications in one call, so a notifier
  // that can (a database) delivers them in one round trip. The default calls notify() for each.
  virtual void notify_all(const std::vector<notification>& batch) {
    for (const auto& n : batch) {
      notify(n);
    }
  }
};

}  // namespace mercato::notifications
