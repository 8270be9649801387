// libFuzzer target for core/topic and core/topic_trie.
//
// The input is split at its first 0xFF byte into a filter and a name (0xFF never occurs in
// valid UTF-8, so it cannot be part of either); without one, the whole input is used as both.
// - check_name / check_filter / is_valid_topic_utf8 never crash and agree with each other.
// - For a valid filter and a valid name: a filter trie's match(name) and a name trie's
//   match_names(filter) agree with topic::matches, and covers() agrees with matches() when the
//   narrow filter is the literal name.
// - Every valid non-shared filter covers itself; a valid shared filter splits into a valid
//   group and filter.
// - When both halves are valid filters: if one covers the other, it matches the names the
//   other matches (probed with names made from the narrow filter).
// Any violation aborts, which libFuzzer reports as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/message_body.hpp"
#include "core/requests.hpp"
#include "core/text.hpp"
#include "core/topic.hpp"
#include "core/topic_trie.hpp"

namespace {

using namespace mqttws;

void expect(bool ok, const char* what, std::string_view a, std::string_view b = {}) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_topic: %s\n  [%.*s]\n  [%.*s]\n", what, static_cast<int>(a.size()),
                 a.data(), static_cast<int>(b.size()), b.data());
    std::abort();
}

bool is_shared(std::string_view filter) {
    return filter.rfind("$share/", 0) == 0;
}

// Validation of one string, on its own.
void check_one(std::string_view s) {
    const auto as_name = topic::check_name(s);
    const auto as_filter = topic::check_filter(s);
    const bool utf8 = topic::is_valid_topic_utf8(s);
    if (utf8) expect(is_valid_utf8(s), "topic UTF-8 accepted what the codec refuses", s);
    if (!as_name) {
        expect(utf8 && !s.empty(), "a valid name that is not valid UTF-8 or empty", s);
        expect(s.find_first_of("+#") == std::string_view::npos, "a valid name with wildcards", s);
        // A name is a filter that matches exactly itself.
        if (!is_shared(s)) {
            expect(!as_filter, "a valid name is not a valid filter", s);
            expect(topic::matches(s, s), "a name does not match itself", s);
            expect(topic::covers(s, s), "a name does not cover itself", s);
        }
    }
    if (as_name) expect(!as_name->message.empty(), "a problem without a message", s);
    if (as_filter) expect(!as_filter->message.empty(), "a problem without a message", s);
    if (!as_filter) {
        expect(utf8 && !s.empty(), "a valid filter that is not valid UTF-8 or empty", s);
        if (is_shared(s)) {
            const auto shared = topic::split_shared(s);
            expect(shared.has_value(), "a valid $share filter that does not split", s);
            expect(!shared->group.empty() &&
                       shared->group.find_first_of("+#") == std::string_view::npos,
                   "a shared group with wildcards", s);
            // The part after the group is an ordinary filter ("$share/g/$share/x" is fine; its
            // part "$share/x" alone would be read as a malformed shared filter).
            expect(is_shared(shared->filter) || !topic::check_filter(shared->filter),
                   "a shared filter part is invalid", s);
        } else {
            expect(!topic::split_shared(s), "an ordinary filter splits as shared", s);
            expect(topic::covers(s, s), "a filter does not cover itself", s);
        }
    }
}

struct value {
    std::string key;
};

// A valid, non-shared filter against a valid name.
void check_pair(std::string_view filter, std::string_view name) {
    const bool expected = topic::matches(filter, name);

    // A trie of filters, with neighbours so that the walk has other branches to take.
    topic_trie<value> filters;
    for (const std::string_view f :
         {filter, std::string_view("#"), std::string_view("+"), std::string_view("+/#"), name}) {
        filters.get_or_create(f).key = std::string(f);
    }
    bool found = false;
    filters.match(name, [&](value& v) {
        if (v.key == filter) {
            expect(!found, "trie visited the filter twice", filter, name);
            found = true;
        }
        expect(topic::matches(v.key, name), "trie match disagrees with topic::matches", v.key,
               name);
    });
    expect(found == expected, "trie match disagrees with topic::matches", filter, name);

    // A trie of names: the reverse question.
    topic_trie<value> names;
    names.get_or_create(name).key = std::string(name);
    names.get_or_create("a").key = "a";
    names.get_or_create("$SYS/x").key = "$SYS/x";
    found = false;
    names.match_names(filter, [&](value& v) {
        if (v.key == name) {
            expect(!found, "match_names visited the name twice", filter, name);
            found = true;
        }
        expect(topic::matches(filter, v.key), "match_names disagrees with topic::matches", filter,
               v.key);
    });
    expect(found == expected, "match_names disagrees with topic::matches", filter, name);

    // A literal name as the narrow filter: covering it is matching it.
    if (!is_shared(name)) {
        expect(topic::covers(filter, name) == expected, "covers(filter, name) != matches", filter,
               name);
    }

    // Erasing the filter removes exactly it; the neighbours still match as before.
    const std::size_t before = filters.size();
    expect(filters.erase(filter), "erase did not find the filter", filter);
    expect(filters.size() + 1 == before && filters.find(filter) == nullptr, "erase failed", filter);
    filters.match(name, [&](value& v) {
        expect(v.key != filter, "an erased filter still matches", filter, name);
        expect(topic::matches(v.key, name), "trie match disagrees after erase", v.key, name);
    });
}

// Topic names that `filter` matches: each '+' level filled with `fill`, a final '#' either
// filled with `fill` or dropped together with its '/' (the parent level).
std::string instance(std::string_view filter, std::string_view fill, bool drop_hash) {
    std::string out;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t slash = filter.find('/', pos);
        const std::string_view level = filter.substr(pos, slash - pos);
        if (level == "#" && drop_hash && !out.empty()) {
            out.pop_back();  // the '/' before it
            return out;
        }
        out += level == "+" || level == "#" ? fill : level;
        if (slash == std::string_view::npos) return out;
        out += '/';
        pos = slash + 1;
    }
}

// Two valid, non-shared filters: covers(wide, narrow) is sound on concrete instances of narrow.
void check_covers(std::string_view wide, std::string_view narrow) {
    if (!topic::covers(wide, narrow)) return;
    for (const std::string_view fill : {std::string_view("x"), std::string_view("")}) {
        for (const bool drop_hash : {false, true}) {
            const std::string name = instance(narrow, fill, drop_hash);
            if (topic::check_name(name)) continue;
            expect(topic::matches(narrow, name), "instance() made a name narrow does not match",
                   narrow, name);
            expect(topic::matches(wide, name), "covers(wide, narrow) but wide misses a name", wide,
                   name);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t split = input.find('\xFF');
    const std::string_view filter =
        split == std::string_view::npos ? input : input.substr(0, split);
    const std::string_view name = split == std::string_view::npos ? input : input.substr(split + 1);

    check_one(filter);
    if (split != std::string_view::npos) check_one(name);

    if (!topic::check_filter(filter) && !is_shared(filter) && !topic::check_name(name)) {
        check_pair(filter, name);
    }
    if (split != std::string_view::npos && !topic::check_filter(filter) && !is_shared(filter) &&
        !topic::check_filter(name) && !is_shared(name)) {
        check_covers(filter, name);
        check_covers(name, filter);
    }
    return 0;
}
