#pragma once
// Identifiers for rows PostgreSQL indexes: UUID version 7 (RFC 9562), a 48-bit Unix millisecond
// timestamp followed by 74 random bits. Ids made one after another sort one after another, so the
// b-tree of a uuid key (outbox.id, entity_snapshots' (kind, id), the carts projection) grows at its
// right edge: an insert dirties the few pages there instead of a random leaf of an index that outgrows
// shared_buffers, which with random (version 4) ids cost a page read and, after every checkpoint, a full
// page image in the WAL per insert. Not secret and not a capability: nothing is authorised by knowing one.

#include <cstdint>
#include <string>
#include <string_view>

namespace mercato::persistence {

// A fresh version-7 UUID in its canonical text form (36 characters, lower-case hex).
std::string time_ordered_uuid();

// The same with the timestamp given (milliseconds since the Unix epoch): tests.
std::string time_ordered_uuid(std::uint64_t unix_ms);

// Whether `s` is a UUID in the canonical text form PostgreSQL's uuid type reads: 36 characters, hex digits
// of either case in groups of 8-4-4-4-12 separated by dashes (any version). Checked before a value is cast
// to uuid in SQL, so a malformed one is refused as bad input rather than failing the statement.
bool is_uuid_text(std::string_view s);

}  // namespace mercato::persistence
