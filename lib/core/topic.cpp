#include "core/topic.hpp"

#include <algorithm>
#include <cstdint>

#include "core/text.hpp"

namespace mqttws::topic {
namespace {

// Takes the level starting at `pos` and moves `pos` past the next '/'. Sets `last` when the
// level just taken was the final one. Levels may be empty ("a//b", "/a").
std::string_view take_level(std::string_view s, std::size_t& pos, bool& last) noexcept {
    const std::size_t slash = s.find('/', pos);
    std::string_view level;
    if (slash == std::string_view::npos) {
        level = s.substr(pos);
        last = true;
    } else {
        level = s.substr(pos, slash - pos);
        pos = slash + 1;
    }
    return level;
}

std::size_t level_count(std::string_view s) noexcept {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '/')) + 1;
}

problem too_large(std::string message) {
    return problem{true, std::move(message)};
}
problem invalid(std::string message) {
    return problem{false, std::move(message)};
}

std::optional<problem> check_common(std::string_view s, std::string_view what, const limits& lim) {
    if (s.empty()) return invalid(std::string(what) + " must not be empty");
    if (s.size() > lim.max_bytes) {
        return too_large(std::string(what) + " is " + std::to_string(s.size()) +
                         " bytes; the limit is " + std::to_string(lim.max_bytes));
    }
    if (!is_valid_topic_utf8(s)) {
        return invalid(std::string(what) +
                       " must be UTF-8 without NUL, control characters or non-characters");
    }
    if (level_count(s) > lim.max_levels) {
        return too_large(std::string(what) + " has more than " + std::to_string(lim.max_levels) +
                         " levels");
    }
    return std::nullopt;
}

// Wildcard rules for the filter part (after any `$share/group/`).
std::optional<problem> check_wildcards(std::string_view filter) {
    std::size_t pos = 0;
    bool last = false;
    while (!last) {
        const std::string_view level = take_level(filter, pos, last);
        if (level.size() > 1 && level.find_first_of("+#") != std::string_view::npos) {
            return invalid("a wildcard ('+' or '#') must fill a whole topic level");
        }
        if (level == "#" && !last) return invalid("'#' must be the last level of a filter");
    }
    return std::nullopt;
}

}  // namespace

bool is_valid_topic_utf8(std::string_view text) noexcept {
    // Well-formed UTF-8 (text.hpp), and none of the characters Mosquitto refuses in a topic.
    return for_each_code_point(text, [](std::uint32_t cp) {
        if (cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F)) return false;  // NUL, C0, DEL, C1
        if (cp >= 0xFDD0 && cp <= 0xFDEF) return false;              // non-characters
        return (cp & 0xFFFE) != 0xFFFE;                              // U+xxFFFE, U+xxFFFF
    });
}

std::optional<problem> check_name(std::string_view name, const limits& lim) {
    if (auto p = check_common(name, "topic", lim)) return p;
    if (name.find_first_of("+#") != std::string_view::npos) {
        return invalid("a topic to publish to must not contain wildcards ('+' or '#')");
    }
    return std::nullopt;
}

std::optional<problem> check_filter(std::string_view filter, const limits& lim) {
    if (auto p = check_common(filter, "topic filter", lim)) return p;
    if (filter.rfind("$share/", 0) == 0) {
        const auto shared = split_shared(filter);
        if (!shared) {
            return invalid("a shared subscription must look like $share/<group>/<filter>");
        }
        if (shared->group.find_first_of("+#") != std::string_view::npos) {
            return invalid("a shared subscription group must not contain wildcards");
        }
        return check_wildcards(shared->filter);
    }
    return check_wildcards(filter);
}

std::optional<shared_filter> split_shared(std::string_view filter) noexcept {
    constexpr std::string_view prefix = "$share/";
    if (filter.rfind(prefix, 0) != 0) return std::nullopt;
    const std::string_view rest = filter.substr(prefix.size());
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) {
        return std::nullopt;
    }
    return shared_filter{rest.substr(0, slash), rest.substr(slash + 1)};
}

bool matches(std::string_view filter, std::string_view name) noexcept {
    if (!name.empty() && name.front() == '$' && !filter.empty() &&
        (filter.front() == '+' || filter.front() == '#')) {
        return false;  // §4.7.2: leading wildcards do not match $-topics
    }
    std::size_t fpos = 0, npos = 0;
    bool flast = false, nlast = false;
    for (;;) {
        const std::string_view flevel = take_level(filter, fpos, flast);
        if (flevel == "#") return true;  // also matches the parent level ("a/#" matches "a")
        const std::string_view nlevel = take_level(name, npos, nlast);
        if (flevel != "+" && flevel != nlevel) return false;
        if (flast || nlast) {
            if (flast && nlast) return true;
            // The name ended first: only a trailing "/#" in the filter still matches.
            return nlast && !flast && filter.substr(fpos) == "#";
        }
    }
}

bool covers(std::string_view wide, std::string_view narrow) noexcept {
    const bool narrow_dollar = !narrow.empty() && narrow.front() == '$';
    const bool wide_leading_wildcard =
        !wide.empty() && (wide.front() == '+' || wide.front() == '#');
    if (narrow_dollar && wide_leading_wildcard) return false;
    // Every topic has a first level, so "+/#" matches exactly what "#" matches; the level walk
    // below would stop at "+" against "#".
    if (wide == "+/#" && narrow == "#") return true;
    std::size_t wpos = 0, npos = 0;
    bool wlast = false, nlast = false;
    for (;;) {
        const std::string_view wlevel = take_level(wide, wpos, wlast);
        if (wlevel == "#") return true;
        const std::string_view nlevel = take_level(narrow, npos, nlast);
        if (nlevel == "#") return false;  // narrow reaches any depth; wide stops somewhere
        if (wlevel != "+" && (nlevel == "+" || wlevel != nlevel)) return false;
        if (wlast || nlast) {
            if (wlast && nlast) return true;
            // narrow stops first: wide must allow stopping here, i.e. continue with "/#" only.
            return nlast && !wlast && wide.substr(wpos) == "#";
        }
    }
}

bool overlaps(std::string_view a, std::string_view b) noexcept {
    // `$` rule: a topic starting with '$' is matched only by filters whose first level is literal
    // and starts with '$'. If one filter starts with such a level and the other with a wildcard,
    // no topic can match both.
    const auto leading_wildcard = [](std::string_view f) {
        return !f.empty() && (f.front() == '+' || f.front() == '#');
    };
    const auto leading_dollar = [](std::string_view f) { return !f.empty() && f.front() == '$'; };
    if ((leading_dollar(a) && leading_wildcard(b)) || (leading_dollar(b) && leading_wildcard(a))) {
        return false;
    }
    std::size_t apos = 0, bpos = 0;
    for (;;) {
        const std::size_t aslash = a.find('/', apos);
        const std::size_t bslash = b.find('/', bpos);
        const std::string_view alevel = a.substr(apos, aslash - apos);
        const std::string_view blevel = b.substr(bpos, bslash - bpos);
        if (alevel == "#" || blevel == "#") return true;  // '#' also matches the parent level
        if (alevel != "+" && blevel != "+" && alevel != blevel) return false;
        const bool alast = aslash == std::string_view::npos;
        const bool blast = bslash == std::string_view::npos;
        if (alast && blast) return true;
        if (alast) return b.substr(bslash + 1) == "#";  // "a" and "a/#" share the topic "a"
        if (blast) return a.substr(aslash + 1) == "#";
        apos = aslash + 1;
        bpos = bslash + 1;
    }
}

}  // namespace mqttws::topic
