#include "core/acl.hpp"

#include <optional>

#include "core/topic.hpp"

namespace mqttws {
namespace {

using config_text::first_word;
using config_text::trim;

// ---- small text helpers for explanations ----

// A value quoted for a one-sentence explanation: control bytes shown as '?', long values cut
// (at a UTF-8 character boundary) so that a 64 KiB topic does not make a 64 KiB log line.
std::string quote(std::string_view s) {
    constexpr std::size_t max_bytes = 120;
    bool cut = false;
    if (s.size() > max_bytes) {
        std::size_t end = max_bytes;
        while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80)
            --end;
        s = s.substr(0, end);
        cut = true;
    }
    std::string out = "'";
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7F) ? '?' : c;
    }
    if (cut) out += "...";
    out += '\'';
    return out;
}

std::string who(std::string_view client_id, std::string_view username) {
    if (username.empty()) return "anonymous client " + quote(client_id);
    return "user " + quote(username);
}

std::string describe(const acl_rule& rule) {
    return "line " + std::to_string(rule.line) + " " + quote(rule.text);
}

std::optional<acl_access> parse_access(std::string_view word) {
    if (word == "read") return acl_access::read;
    if (word == "write") return acl_access::write;
    if (word == "readwrite") return acl_access::readwrite;
    if (word == "deny") return acl_access::deny;
    return std::nullopt;
}

bool has(acl_access granted, acl_access wanted) {
    return (static_cast<unsigned>(granted) & static_cast<unsigned>(wanted)) != 0;
}

// Calls visit(index, level) for each level of a topic or filter; stops when visit returns false.
template <class Visit>
void for_each_level(std::string_view s, Visit&& visit) {
    std::size_t index = 0;
    for (;;) {
        const std::size_t slash = s.find('/');
        if (!visit(index, s.substr(0, slash))) return;
        if (slash == std::string_view::npos) return;
        s.remove_prefix(slash + 1);
        ++index;
    }
}

bool is_placeholder(std::string_view level) {
    return level == "%c" || level == "%u";
}

// ---- substitution of %c / %u ----

struct resolved_filter {
    enum class status { ok, not_applicable, unsafe };
    status state = status::ok;
    std::string storage;            // the substituted filter, when there was anything to substitute
    std::string_view filter;        // what to match with (points into the rule or into `storage`)
    std::string_view unsafe_field;  // "client id" or "username" when unsafe
};

// Substitutes whole levels "%c" and "%u". A value that is empty, contains '+', '#' or '/', is
// not valid in a topic, or starts with '$' in the first level would widen the filter or point it
// at `$`-topics: that is `unsafe`. "%u" for a client without a username is `not_applicable`.
resolved_filter resolve(std::string_view filter, std::string_view client_id,
                        std::string_view username) {
    resolved_filter out;
    if (filter.find('%') == std::string_view::npos) {
        out.filter = filter;
        return out;
    }
    for_each_level(filter, [&](std::size_t index, std::string_view level) {
        if (index > 0) out.storage += '/';
        if (!is_placeholder(level)) {
            out.storage += level;
            return true;
        }
        const bool is_client = level == "%c";
        if (!is_client && username.empty()) {
            out.state = resolved_filter::status::not_applicable;
            return false;
        }
        const std::string_view value = is_client ? client_id : username;
        if (value.empty() || value.find_first_of("+#/") != std::string_view::npos ||
            (index == 0 && value.front() == '$') || !topic::is_valid_topic_utf8(value)) {
            out.state = resolved_filter::status::unsafe;
            out.unsafe_field = is_client ? "client id" : "username";
            return false;
        }
        out.storage += value;
        return true;
    });
    if (out.state == resolved_filter::status::ok) {
        if (out.storage.size() > topic::limits{}.max_bytes) {
            out.state = resolved_filter::status::unsafe;
            out.unsafe_field = "client id or username";
        }
        out.filter = out.storage;
    }
    return out;
}

// ---- the request being decided ----

struct request {
    bool subscribe = false;
    std::string_view target;   // topic name (publish) or inner filter (subscribe)
    std::string_view display;  // what the client asked for, as it asked
    std::string_view client_id;
    std::string_view username;

    const char* verb() const { return subscribe ? "read" : "write"; }
    acl_access wanted() const { return subscribe ? acl_access::read : acl_access::write; }
    // Does a (resolved) grant filter allow the whole request?
    bool granted_by(std::string_view rule_filter) const {
        return subscribe ? topic::covers(rule_filter, target) : topic::matches(rule_filter, target);
    }
    // Does a (resolved) deny filter hit any part of the request?
    bool denied_by(std::string_view rule_filter) const {
        return subscribe ? topic::overlaps(rule_filter, target)
                         : topic::matches(rule_filter, target);
    }
};

// How many leading levels of the request a rule shares; used only to name the closest rule.
std::size_t shared_levels(std::string_view rule_filter, std::string_view target) {
    std::size_t count = 0;
    std::size_t tpos = 0;
    bool target_done = false;
    for_each_level(rule_filter, [&](std::size_t, std::string_view level) {
        if (target_done) return false;
        const std::size_t slash = target.find('/', tpos);
        const std::string_view tlevel = target.substr(tpos, slash - tpos);
        if (slash == std::string_view::npos) {
            target_done = true;
        } else {
            tpos = slash + 1;
        }
        if (level == "#") {
            ++count;
            return false;
        }
        if (level != "+" && level != tlevel) return false;
        ++count;
        return true;
    });
    return count;
}

// The grant filter (EMQX-style token claim) that allows the request, if any.
std::optional<std::string> grant_allowing(const std::vector<std::string>& filters,
                                          const request& req) {
    for (const std::string& f : filters) {
        if (topic::check_filter(f) || topic::split_shared(f)) continue;  // not a usable filter
        const resolved_filter r = resolve(f, req.client_id, req.username);
        if (r.state != resolved_filter::status::ok) continue;
        if (req.granted_by(r.filter)) return f;
    }
    return std::nullopt;
}

acl_decision decide(bool allowed, std::size_t line, std::string reason) {
    return acl_decision{allowed, line, std::move(reason)};
}

}  // namespace

// ---- parsing ----

std::variant<acl, std::vector<line_error>> acl::parse(std::string_view text) {
    acl result;
    result.configured_ = true;
    std::vector<line_error> errors;
    std::optional<std::string> current_user;

    config_text::for_each_line(text, [&](std::size_t number, std::string_view raw) {
        const std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') return;
        const auto fail = [&](std::string message) {
            errors.push_back(line_error{number, std::move(message)});
        };

        std::string_view rest;
        const std::string_view keyword = first_word(line, rest);
        if (keyword == "user") {
            if (rest.empty()) return fail("'user' needs a username");
            current_user = std::string(rest);
            return;
        }
        if (keyword != "topic" && keyword != "pattern") {
            return fail("unknown keyword " + quote(keyword) +
                        "; expected 'user', 'topic' or 'pattern'");
        }
        const bool is_pattern = keyword == "pattern";
        if (rest.empty()) return fail(quote(keyword) + " needs a topic filter");

        std::string_view after;
        const std::string_view word = first_word(rest, after);
        const std::optional<acl_access> access = parse_access(word);
        std::string_view filter;
        if (after.empty()) {
            // Mosquitto would read "topic read" as the topic "read" with readwrite access; that
            // is almost certainly a rule with its topic missing, so it is refused.
            if (access) {
                return fail(quote(line) + " names no topic filter (to mean the topic " +
                            quote(word) + ", write the access too: '" + std::string(keyword) +
                            " readwrite " + std::string(word) + "')");
            }
            filter = word;
        } else {
            if (!access) {
                return fail("unknown access " + quote(word) +
                            "; expected read, write, readwrite or deny");
            }
            filter = after;
        }

        if (const auto problem = topic::check_filter(filter)) {
            return fail("invalid topic filter " + quote(filter) + ": " + problem->message);
        }
        if (filter.rfind("$share/", 0) == 0) {
            return fail("a rule cannot name a shared subscription; write its inner filter " +
                        quote(topic::split_shared(filter)->filter) +
                        " (subscriptions are checked on it)");
        }
        std::optional<std::string> placeholder_problem;
        for_each_level(filter, [&](std::size_t, std::string_view level) {
            if (is_placeholder(level)) {
                if (!is_pattern) {
                    placeholder_problem =
                        "'%c' and '%u' are substituted only in 'pattern' "
                        "lines, not in 'topic' lines";
                }
            } else if (is_pattern && (level.find("%c") != std::string_view::npos ||
                                      level.find("%u") != std::string_view::npos)) {
                placeholder_problem =
                    "'%c' and '%u' must fill a whole topic level (as in "
                    "'d/%c/#'), not " +
                    quote(level);
            }
            return !placeholder_problem;
        });
        if (placeholder_problem) return fail(*placeholder_problem);

        acl_rule rule{number, std::string(line), is_pattern, access.value_or(acl_access::readwrite),
                      std::string(filter)};
        if (is_pattern) {
            result.patterns_.push_back(std::move(rule));
        } else if (current_user) {
            result.users_[*current_user].push_back(std::move(rule));
        } else {
            result.anonymous_.push_back(std::move(rule));
        }
        ++result.rule_count_;
    });

    if (!errors.empty()) return errors;
    return result;
}

std::vector<const acl_rule*> acl::rules_for(std::string_view username) const {
    std::vector<const acl_rule*> out;
    const std::vector<acl_rule>* section = &anonymous_;
    if (!username.empty()) {
        const auto it = users_.find(username);
        section = it == users_.end() ? nullptr : &it->second;
    }
    if (section != nullptr) {
        for (const acl_rule& r : *section)
            out.push_back(&r);
    }
    for (const acl_rule& r : patterns_)
        out.push_back(&r);
    return out;
}

// ---- checking ----

namespace {

acl_decision check(const acl& self, const std::vector<const acl_rule*>& rules, const request& req,
                   const acl_grant* grant) {
    const std::string whom = who(req.client_id, req.username);

    // 1. The file.
    const acl_rule* granting = nullptr;
    if (self.configured()) {
        // Deny rules first: any hit refuses, whatever grants exist.
        for (const acl_rule* rule : rules) {
            if (rule->access != acl_access::deny) continue;
            const resolved_filter r = resolve(rule->filter, req.client_id, req.username);
            if (r.state == resolved_filter::status::not_applicable) continue;
            if (r.state == resolved_filter::status::unsafe) {
                return decide(false, rule->line,
                              "denied: deny rule " + describe(*rule) +
                                  " cannot be applied safely because the " +
                                  std::string(r.unsafe_field) + " of " + whom +
                                  " is empty or contains '+', '#' or '/'");
            }
            if (req.denied_by(r.filter)) {
                return decide(false, rule->line,
                              "denied: " + describe(*rule) + " denies " + quote(req.display) +
                                  " for " + whom);
            }
        }
        const acl_rule* skipped_unsafe = nullptr;
        std::string_view skipped_field;
        for (const acl_rule* rule : rules) {
            if (!has(rule->access, req.wanted())) continue;
            const resolved_filter r = resolve(rule->filter, req.client_id, req.username);
            if (r.state == resolved_filter::status::unsafe && skipped_unsafe == nullptr) {
                skipped_unsafe = rule;
                skipped_field = r.unsafe_field;
            }
            if (r.state != resolved_filter::status::ok) continue;
            if (req.granted_by(r.filter)) {
                granting = rule;
                break;
            }
        }
        if (granting == nullptr) {
            std::string reason = "denied: no rule grants " + std::string(req.verb()) + " on " +
                                 quote(req.display) + " for " + whom;
            if (skipped_unsafe != nullptr) {
                reason += " (" + describe(*skipped_unsafe) + " was not applied: the " +
                          std::string(skipped_field) + " is empty or contains '+', '#' or '/')";
            } else if (rules.empty()) {
                reason += " (no rule in the ACL applies to this client)";
            } else {
                // Name the closest rule: one that matches but lacks the access, else the one
                // sharing the most leading levels.
                const acl_rule* closest = nullptr;
                std::size_t best = 0;
                for (const acl_rule* rule : rules) {
                    if (rule->access == acl_access::deny) continue;
                    const resolved_filter r = resolve(rule->filter, req.client_id, req.username);
                    if (r.state != resolved_filter::status::ok) continue;
                    const std::size_t score = req.granted_by(r.filter)
                                                  ? std::size_t(1) << 20
                                                  : shared_levels(r.filter, req.target);
                    if (score > best) {
                        best = score;
                        closest = rule;
                    }
                }
                if (closest != nullptr) reason += " (closest: " + describe(*closest) + ")";
            }
            return decide(false, 0, std::move(reason));
        }
    }

    std::string allowed_by = granting != nullptr
                                 ? describe(*granting) + " grants " + std::string(req.verb()) +
                                       " on " + quote(req.display) + " for " + whom
                                 : std::string("no ACL configured");

    // 2. The token's grant narrows what the file allows.
    if (grant != nullptr) {
        const auto& filters = req.subscribe ? grant->sub : grant->pub;
        const char* list = req.subscribe ? "sub" : "pub";
        const std::optional<std::string> by = grant_allowing(filters, req);
        if (!by) {
            return decide(false, granting != nullptr ? granting->line : 0,
                          "denied: the token's acl claim has no " + std::string(list) +
                              " filter that " + (req.subscribe ? "covers " : "matches ") +
                              quote(req.display) + " (without it: " + allowed_by + ")");
        }
        allowed_by += ", and the token's acl claim allows it by " + quote(*by);
    }
    return decide(true, granting != nullptr ? granting->line : 0, "allowed: " + allowed_by);
}

}  // namespace

acl_decision acl::check_publish(std::string_view client_id, std::string_view username,
                                std::string_view topic_name, const acl_grant* grant) const {
    if (const auto problem = topic::check_name(topic_name)) {
        return decide(false, 0,
                      "denied: " + quote(topic_name) + " is not a valid topic name (" +
                          problem->message + ")");
    }
    request req;
    req.subscribe = false;
    req.target = topic_name;
    req.display = topic_name;
    req.client_id = client_id;
    req.username = username;
    return check(*this, configured_ ? rules_for(username) : std::vector<const acl_rule*>{}, req,
                 grant);
}

acl_decision acl::check_subscribe(std::string_view client_id, std::string_view username,
                                  std::string_view filter, const acl_grant* grant) const {
    if (const auto problem = topic::check_filter(filter)) {
        return decide(
            false, 0,
            "denied: " + quote(filter) + " is not a valid topic filter (" + problem->message + ")");
    }
    request req;
    req.subscribe = true;
    req.target = filter;
    if (const auto shared = topic::split_shared(filter)) req.target = shared->filter;
    req.display = filter;
    req.client_id = client_id;
    req.username = username;
    return check(*this, configured_ ? rules_for(username) : std::vector<const acl_rule*>{}, req,
                 grant);
}

}  // namespace mqttws
