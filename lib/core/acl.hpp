// Access control: who may publish to a topic and subscribe to a filter, read from a Mosquitto
// `acl_file` (see `man 5 mosquitto.conf`), optionally narrowed further by a token's grant.
//
// File syntax, as Mosquitto 2.0 reads it:
//   user <name>                                  rules below apply to this username
//   topic [read|write|readwrite|deny] <filter>   access defaults to readwrite
//   pattern [read|write|readwrite|deny] <filter> applies to every client; %c and %u substituted
// `#` at the start of a line is a comment; blank lines and surrounding whitespace are ignored.
// A topic may contain spaces, but then the access word is required.
//
// Whose rules apply (Mosquitto's semantics, from src/security_default.c):
// - `topic` lines before the first `user` line apply ONLY to clients without a username
//   (anonymous clients), not to everyone. A client with a username gets the `topic` lines of its
//   `user` section(s) — several sections for one name are merged — and nothing else.
// - `pattern` lines apply to every client, wherever they appear in the file. `%c` is replaced by
//   the client id and `%u` by the username; each must fill a whole topic level ("d/%c/#", not
//   "d-%c"). A pattern with `%u` does not apply to an anonymous client.
// - An empty username is treated as no username (anonymous).
//
// Decisions:
// - Publish: allowed when a write/readwrite rule matches the topic (topic::matches).
// - Subscribe: allowed when a read/readwrite rule covers the whole filter (topic::covers), so a
//   filter wider than the grant is refused. Mosquitto itself accepts every SUBSCRIBE and filters
//   each delivered message by read access; the bridge shares one upstream connection, so it must
//   decide at subscribe time. `$share/<group>/<filter>` is checked on its inner filter.
// - `deny` rules win over every grant: a deny rule matching the topic refuses a publish, and one
//   that matches ANY topic the filter could match refuses a subscription. This is stricter than
//   Mosquitto 2.0, where a `topic` grant of the user's section is found before a deny `pattern`.
// - `$`-topics (`$SYS/...`) are reachable only through rules that name them: a rule whose first
//   level is `+` or `#` never matches them (topic::matches / topic::covers).
// - Substitution safety: a client id or username that is empty or contains `+`, `#` or `/` (or
//   starts with `$` when substituted into the first level) would widen the pattern, so such a
//   pattern grants nothing to that client, and a deny pattern that cannot be substituted safely
//   refuses every request of that client (fail closed).
// - With no ACL file configured (a default-constructed `acl`), everything is allowed.
// - A grant (the JWT `acl` claim, EMQX's convention) narrows whatever the file allows: a publish
//   also needs a `pub` filter matching the topic, a subscription a `sub` filter covering it.
//   Grant filters may use `%c` and `%u` too, with the same safety rule.
// Every decision says in one sentence which rule decided (file line and text), or that none did.
//
// Thread safety: an `acl` is immutable after parse(); const member functions are safe to call
// from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config_text.hpp"

namespace mqttws {

// Topic filters a token allows: publish only where a `pub` filter matches, subscribe only where
// a `sub` filter covers the requested filter. An empty list allows nothing of that kind.
struct acl_grant {
    std::vector<std::string> pub;
    std::vector<std::string> sub;
};

enum class acl_access : std::uint8_t { deny = 0, read = 1, write = 2, readwrite = 3 };

// One `topic` or `pattern` line of the file.
struct acl_rule {
    std::size_t line = 0;
    std::string text;  // the line as written, trimmed
    bool is_pattern = false;
    acl_access access = acl_access::readwrite;
    std::string filter;
};

struct acl_decision {
    bool allowed = false;
    std::size_t line = 0;  // the file line of the rule that decided; 0 when no rule did
    std::string reason;    // one sentence starting "allowed:" or "denied:"
};

class acl {
  public:
    // No ACL configured: everything is allowed (a grant, if given, still narrows).
    acl() = default;

    // Parses the text of an ACL file. Either the rules, or every problem found, by line.
    static std::variant<acl, std::vector<line_error>> parse(std::string_view text);

    bool configured() const { return configured_; }
    std::size_t rule_count() const { return rule_count_; }

    // `username` empty = anonymous. `topic` must be a topic name (no wildcards).
    acl_decision check_publish(std::string_view client_id, std::string_view username,
                               std::string_view topic, const acl_grant* grant = nullptr) const;
    // `filter` may be a `$share/<group>/<filter>`; the inner filter is checked.
    acl_decision check_subscribe(std::string_view client_id, std::string_view username,
                                 std::string_view filter, const acl_grant* grant = nullptr) const;

  private:
    // Rules that apply to a client: its section (or the anonymous one) and every pattern.
    std::vector<const acl_rule*> rules_for(std::string_view username) const;

    bool configured_ = false;
    std::size_t rule_count_ = 0;
    std::vector<acl_rule> anonymous_;                                  // before any `user` line
    std::map<std::string, std::vector<acl_rule>, std::less<>> users_;  // by username
    std::vector<acl_rule> patterns_;
};

}  // namespace mqttws
