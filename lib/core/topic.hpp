// MQTT topic names and topic filters: validation and matching (MQTT 3.1.1 §4.7, same in v5).
//
// Validation is at least as strict as Mosquitto's: the bridge shares ONE connection among all
// clients, and Mosquitto disconnects a client that sends a malformed topic, so a single bad
// topic let through would cut every client off. Hence, besides the MQTT rules, the UTF-8 checks
// reject what Mosquitto rejects: NUL, C0/C1 control characters, UTF-16 surrogates, overlong
// encodings, non-characters (U+FDD0..U+FDEF, U+xxFFFE/F) and code points above U+10FFFF.
//
// `$`-topics: a filter whose first level is `+` or `#` does not match a topic starting with `$`
// (§4.7.2), so `#` never sees `$SYS/...`; `$SYS/#` does.
// Shared subscriptions (`$share/group/filter`) are recognised by `split_shared()`.
//
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mqttws::topic {

struct limits {
    std::size_t max_bytes = 65535;  // MQTT's own limit (a 16-bit length prefix)
    std::size_t max_levels = 128;   // Mosquitto refuses deep hierarchies; stay well inside
};

// What is wrong with a name or filter. `too_large` is separate so that it can be answered with
// the `too_large` code; everything else is `bad_request`.
struct problem {
    bool too_large = false;
    std::string message;  // one sentence, for the client, e.g. "'#' must be the last level"
};

// A topic name as used in PUBLISH: no wildcards, not empty.
std::optional<problem> check_name(std::string_view name, const limits& lim = {});
// A topic filter as used in SUBSCRIBE: `+` whole levels, `#` only as the last level.
// `$share/group/filter` is accepted when the group is non-empty and has no wildcards.
std::optional<problem> check_filter(std::string_view filter, const limits& lim = {});

// True when `name` is well-formed UTF-8 with no character Mosquitto refuses in a topic.
bool is_valid_topic_utf8(std::string_view text) noexcept;

// Does `filter` (valid, not a `$share/` filter) match topic `name` (valid)?
bool matches(std::string_view filter, std::string_view name) noexcept;

// Does every topic that `narrow` can match also match `wide`? (Both valid, not shared.)
// Used by the ACL: a subscription is allowed only if a readable pattern covers it.
bool covers(std::string_view wide, std::string_view narrow) noexcept;

// Could some topic match both filters? (Both valid, neither a `$share/` filter.) Honours the
// `$` rule: "#" and "$SYS/x" share no topic. Used by the ACL's deny rules against subscriptions.
bool overlaps(std::string_view a, std::string_view b) noexcept;

struct shared_filter {
    std::string_view group;
    std::string_view filter;
};
// Splits `$share/group/filter`; nullopt for an ordinary filter.
std::optional<shared_filter> split_shared(std::string_view filter) noexcept;

}  // namespace mqttws::topic
