#pragma once
// What an entity kind hands to the runtime besides its state: the domain events of a change and the
// rows that keep its query tables in step, both as plain data. persistence/ turns them into SQL; an
// entity kind names no SQL. No CAF types here, so persistence/ can include it.

#include <optional>
#include <string>
#include <vector>

namespace mercato::protocol {

// A domain event (ARCHITECTURE.md event schema), appended to the outbox in the snapshot's transaction.
struct domain_event {
  std::string id;              // UUID, unique: handlers deduplicate by it ("" = the runtime assigns one)
  std::string event_type;      // "CartItemAdded", ...
  std::string event_version = "1";
  std::string data_json;       // JSON object text ("" is stored as {})
  std::string metadata_json;   // {"correlation_id","causation_id","user_id","source"} as JSON text ("" = {})
};

// The SQL types a projection column may have (the writer casts the text value to it).
enum class column_type { text, uuid, integer, bigint, numeric, boolean, timestamptz, jsonb };

struct projection_column {
  std::string name;                  // a lower-case SQL identifier
  column_type type = column_type::text;
  std::optional<std::string> value;  // text form; nullopt = NULL
};

// One row of a query table, upserted in the snapshot's transaction. columns[0] is the key (the
// table's primary key or a unique column); a column named "version" is required and guards the row:
// a stored row with a newer version is left alone. Only the newest version of an entity in a batch
// has its rows written (a projection is a function of the state).
struct projection_row {
  std::string table;  // a lower-case SQL identifier
  std::vector<projection_column> columns;
};

}  // namespace mercato::protocol
