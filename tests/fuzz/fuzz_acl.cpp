// libFuzzer target for the ACL file parser and the checks (acl.hpp).
//
// Input: the ACL file text, optionally followed by a NUL byte and "client id\nusername\nfilter
// A\nfilter B". Besides "no crash, no sanitizer report", it checks properties that must hold for
// any ACL: decisions are one "allowed:"/"denied:" sentence; overlap is symmetric and implied by
// covering or by a common topic; and a subscription allowed for a filter is allowed for every
// narrower filter (a topic it covers) — the property that keeps a wide grant from leaking.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/acl.hpp"
#include "core/topic.hpp"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

void check_sentence(const mqttws::acl_decision& d) {
    const std::string_view prefix = d.allowed ? "allowed: " : "denied: ";
    require(d.reason.rfind(prefix, 0) == 0);
    require(d.reason.find('\n') == std::string::npos);
}

// A topic name matched by `filter`: '+' becomes "x", a trailing '#' is dropped or becomes "x".
std::string topic_under(std::string_view filter, bool hash_as_level) {
    std::string out;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t slash = filter.find('/', pos);
        const std::string_view level = filter.substr(pos, slash - pos);
        if (level == "#") {
            if (hash_as_level) {
                out += 'x';
            } else if (!out.empty()) {
                out.pop_back();  // "a/#" matches "a"
            } else {
                out += 'x';  // "#" alone: some topic
            }
            return out;
        }
        out += level == "+" ? std::string_view("x") : level;
        if (slash == std::string_view::npos) return out;
        out += '/';
        pos = slash + 1;
    }
}

std::string_view inner(std::string_view filter) {
    if (const auto s = mqttws::topic::split_shared(filter)) return s->filter;
    return filter;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = input.find('\0');
    const std::string_view text = input.substr(0, nul);

    std::vector<std::string_view> fields;
    if (nul != std::string_view::npos) {
        std::string_view rest = input.substr(nul + 1);
        while (fields.size() < 4) {
            const std::size_t nl = rest.find('\n');
            fields.push_back(rest.substr(0, nl));
            if (nl == std::string_view::npos) break;
            rest.remove_prefix(nl + 1);
        }
    }
    const std::string_view client_id = fields.size() > 0 ? fields[0] : "dev1";
    const std::string_view username = fields.size() > 1 ? fields[1] : "bob";
    std::vector<std::string_view> filters = {"#", "a/#", "a/b", "+/+", "$SYS/#", "dev1/x"};
    for (std::size_t i = 2; i < fields.size(); ++i)
        filters.push_back(fields[i]);

    auto parsed = mqttws::acl::parse(text);
    if (auto* errors = std::get_if<std::vector<mqttws::line_error>>(&parsed)) {
        require(!errors->empty());
        for (const auto& e : *errors)
            require(e.line >= 1 && !e.message.empty());
        return 0;
    }
    const mqttws::acl& acl = std::get<mqttws::acl>(parsed);

    mqttws::acl_grant grant;
    grant.pub = {"a/#", "%c/#"};
    grant.sub = {"+/b", "%u/#", "#"};

    for (const std::string_view f : filters) {
        for (const mqttws::acl_grant* g : {static_cast<const mqttws::acl_grant*>(nullptr),
                                           static_cast<const mqttws::acl_grant*>(&grant)}) {
            const auto sub = acl.check_subscribe(client_id, username, f, g);
            check_sentence(sub);
            check_sentence(acl.check_publish(client_id, username, f, g));
            if (!sub.allowed) continue;
            // Allowed for a filter => allowed for narrower ones under it.
            require(!mqttws::topic::check_filter(f));
            for (const bool hash_as_level : {false, true}) {
                const std::string narrower = topic_under(inner(f), hash_as_level);
                if (mqttws::topic::check_name(narrower)) continue;  // e.g. became empty
                require(acl.check_subscribe(client_id, username, narrower, g).allowed);
            }
        }
    }

    // Overlap properties on every pair of valid, non-shared filters.
    for (const std::string_view a : filters) {
        if (mqttws::topic::check_filter(a) || mqttws::topic::split_shared(a)) continue;
        for (const std::string_view b : filters) {
            if (mqttws::topic::check_filter(b) || mqttws::topic::split_shared(b)) continue;
            const bool overlap = mqttws::topic::overlaps(a, b);
            require(overlap == mqttws::topic::overlaps(b, a));
            if (mqttws::topic::covers(a, b)) require(overlap);
            for (const bool hash_as_level : {false, true}) {
                const std::string t = topic_under(b, hash_as_level);
                if (mqttws::topic::check_name(t)) continue;
                if (mqttws::topic::matches(a, t) && mqttws::topic::matches(b, t)) require(overlap);
            }
        }
    }
    return 0;
}
