// Unit tests for core/topic: validation of names and filters (MQTT 3.1.1 §4.7 plus Mosquitto's
// stricter UTF-8 rules), matches(), covers() and split_shared().
#include <doctest/doctest.h>

#include <algorithm>
#include <bitset>
#include <string>
#include <string_view>
#include <vector>

#include "core/topic.hpp"

namespace topic = mqttws::topic;
using namespace std::string_literals;

namespace {

bool name_ok(std::string_view s) {
    return !topic::check_name(s).has_value();
}
bool filter_ok(std::string_view s) {
    return !topic::check_filter(s).has_value();
}

// Expects `p` to be a bad_request-kind problem with a message.
void expect_invalid(const std::optional<topic::problem>& p) {
    REQUIRE(p.has_value());
    CHECK_FALSE(p->too_large);
    CHECK_FALSE(p->message.empty());
}

void expect_too_large(const std::optional<topic::problem>& p) {
    REQUIRE(p.has_value());
    CHECK(p->too_large);
    CHECK_FALSE(p->message.empty());
}

std::vector<std::string> split_levels(std::string_view s) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t slash = s.find('/', pos);
        if (slash == std::string_view::npos) {
            out.emplace_back(s.substr(pos));
            return out;
        }
        out.emplace_back(s.substr(pos, slash - pos));
        pos = slash + 1;
    }
}

// An independent, level-by-level reading of MQTT 3.1.1 §4.7 to compare matches() against.
bool reference_matches(std::string_view filter, std::string_view name) {
    const auto f = split_levels(filter);
    const auto n = split_levels(name);
    if (!n[0].empty() && n[0][0] == '$' && (f[0] == "+" || f[0] == "#")) return false;
    for (std::size_t i = 0; i < f.size(); ++i) {
        if (f[i] == "#") return true;  // the rest, including nothing more (the parent level)
        if (i == n.size()) return false;
        if (f[i] != "+" && f[i] != n[i]) return false;
    }
    return f.size() == n.size();
}

std::string join(const std::vector<std::string>& levels) {
    std::string out;
    for (std::size_t i = 0; i < levels.size(); ++i) {
        if (i > 0) out += '/';
        out += levels[i];
    }
    return out;
}

// Every string of 1..max_levels levels drawn from `alphabet` (in order), as topic strings.
std::vector<std::string> all_topics(const std::vector<std::string>& alphabet,
                                    std::size_t max_levels) {
    std::vector<std::string> out;
    std::vector<std::vector<std::string>> layer{{}};
    for (std::size_t depth = 1; depth <= max_levels; ++depth) {
        std::vector<std::vector<std::string>> next;
        for (const auto& prefix : layer) {
            for (const auto& level : alphabet) {
                auto longer = prefix;
                longer.push_back(level);
                out.push_back(join(longer));
                next.push_back(std::move(longer));
            }
        }
        layer = std::move(next);
    }
    return out;
}

}  // namespace

TEST_CASE("check_name accepts ordinary topic names") {
    for (const char* name :
         {"a", "/", "//", "a/b", "/finance", "finance/", "a//b", "sport/tennis/player1",
          "$SYS/broker/load", "$", "with space", "caf\xC3\xA9", "\xF0\x9F\x98\x80/emoji", "~"}) {
        INFO(name);
        CHECK(name_ok(name));
    }
}

TEST_CASE("check_name refuses wildcards anywhere") {
    for (const char* name :
         {"+", "#", "a/+", "a/#", "+/a", "a+b", "a#", "sport/tennis/#", "a/b+", "#/a"}) {
        INFO(name);
        expect_invalid(topic::check_name(name));
    }
}

TEST_CASE("empty names and filters are invalid, not too large") {
    expect_invalid(topic::check_name(""));
    expect_invalid(topic::check_filter(""));
}

TEST_CASE("length limit: 65535 bytes pass, 65536 are too_large") {
    const std::string max_name(65535, 'a');
    const std::string over(65536, 'a');
    CHECK(name_ok(max_name));
    CHECK(filter_ok(max_name));
    expect_too_large(topic::check_name(over));
    expect_too_large(topic::check_filter(over));

    // Size is judged before content: an oversized topic full of NULs is still too_large.
    expect_too_large(topic::check_name(std::string(70000, '\0')));

    topic::limits small;
    small.max_bytes = 3;
    CHECK_FALSE(topic::check_name("abc", small).has_value());
    expect_too_large(topic::check_name("abcd", small));
    expect_too_large(topic::check_filter("a/#", topic::limits{2, 128}));
}

TEST_CASE("level limit: 128 levels pass, 129 are too_large") {
    std::string levels128 = "a";
    for (int i = 1; i < 128; ++i)
        levels128 += "/a";
    CHECK(name_ok(levels128));
    CHECK(filter_ok(levels128));
    CHECK(filter_ok(levels128.substr(0, levels128.size() - 1) + "#"));
    expect_too_large(topic::check_name(levels128 + "/a"));
    expect_too_large(topic::check_filter(levels128 + "/#"));

    // Empty levels count: 127 slashes make 128 levels, 128 slashes make 129.
    CHECK(name_ok(std::string(127, '/')));
    expect_too_large(topic::check_name(std::string(128, '/')));

    topic::limits two;
    two.max_levels = 2;
    CHECK_FALSE(topic::check_filter("a/#", two).has_value());
    expect_too_large(topic::check_filter("a/b/#", two));
}

TEST_CASE("UTF-8: what Mosquitto refuses is refused") {
    struct bad {
        std::string bytes;
        const char* why;
    };
    const bad cases[] = {
        {"a\0b"s, "NUL"},
        {"\0"s, "NUL alone"},
        {"\x01", "U+0001"},
        {"a\tb", "tab (C0)"},
        {"a\nb", "newline (C0)"},
        {"\x1F", "U+001F"},
        {"\x7F", "U+007F DEL"},
        {"\xC2\x80", "U+0080 (C1)"},
        {"\xC2\x85", "U+0085 NEL (C1)"},
        {"\xC2\x9F", "U+009F (C1)"},
        {"\xC0\xAF", "overlong '/'"},
        {"\xC0\x80", "overlong NUL"},
        {"\xC1\xBF", "overlong 2-byte"},
        {"\xE0\x80\xAF", "overlong 3-byte '/'"},
        {"\xE0\x9F\xBF", "overlong 3-byte U+07FF"},
        {"\xF0\x80\x80\xAF", "overlong 4-byte '/'"},
        {"\xF0\x8F\xBF\xBF", "overlong 4-byte U+FFFF"},
        {"\xED\xA0\x80", "surrogate U+D800"},
        {"\xED\xAF\xBF", "surrogate U+DBFF"},
        {"\xED\xB0\x80", "surrogate U+DC00"},
        {"\xED\xBF\xBF", "surrogate U+DFFF"},
        {"\xED\xA0\xBD\xED\xB8\x80", "CESU-8 surrogate pair"},
        {"\xEF\xB7\x90", "non-character U+FDD0"},
        {"\xEF\xB7\xAF", "non-character U+FDEF"},
        {"\xEF\xBF\xBE", "non-character U+FFFE"},
        {"\xEF\xBF\xBF", "non-character U+FFFF"},
        {"\xF0\x9F\xBF\xBE", "non-character U+1FFFE"},
        {"\xF0\x9F\xBF\xBF", "non-character U+1FFFF"},
        {"\xF4\x8F\xBF\xBF", "non-character U+10FFFF"},
        {"\xF4\x90\x80\x80", "U+110000, beyond Unicode"},
        {"\xF5\x80\x80\x80", "lead byte F5"},
        {"\xF7\xBF\xBF\xBF", "lead byte F7"},
        {"\xF8\x88\x80\x80\x80", "5-byte form"},
        {"\xFC\x84\x80\x80\x80\x80", "6-byte form"},
        {"\xFE", "byte FE"},
        {"\xFF", "byte FF"},
        {"\x80", "lone continuation byte"},
        {"a\xBF", "continuation byte after ASCII"},
        {"\xC3", "truncated 2-byte"},
        {"\xE2\x82", "truncated 3-byte"},
        {"\xF0\x9F\x98", "truncated 4-byte"},
        {"\xC3"
         "A",
         "lead byte followed by ASCII"},
        {"\xE2\x28\xA1", "bad second byte"},
        {"\xE2\x82\x28", "bad third byte"},
    };
    for (const auto& c : cases) {
        INFO(c.why);
        CHECK_FALSE(topic::is_valid_topic_utf8(c.bytes));
        expect_invalid(topic::check_name(c.bytes));
        expect_invalid(topic::check_filter(c.bytes));
        // Hidden in the middle of an otherwise good topic, too.
        const std::string wrapped = "sensors/" + c.bytes + "/temp";
        CHECK_FALSE(topic::is_valid_topic_utf8(wrapped));
        expect_invalid(topic::check_name(wrapped));
        expect_invalid(topic::check_filter("sensors/" + c.bytes + "/#"));
    }
}

TEST_CASE("UTF-8: boundary characters that are allowed") {
    const std::pair<const char*, const char*> cases[] = {
        {" ", "U+0020 space"},
        {"~", "U+007E"},
        {"\xC2\xA0", "U+00A0 (first after C1)"},
        {"\xDF\xBF", "U+07FF"},
        {"\xE0\xA0\x80", "U+0800"},
        {"\xED\x9F\xBF", "U+D7FF (before surrogates)"},
        {"\xEE\x80\x80", "U+E000 (after surrogates)"},
        {"\xEF\xB7\x8F", "U+FDCF (before non-characters)"},
        {"\xEF\xB7\xB0", "U+FDF0 (after non-characters)"},
        {"\xEF\xBF\xBD", "U+FFFD"},
        {"\xF0\x90\x80\x80", "U+10000"},
        {"\xF0\x9F\xBF\xBD", "U+1FFFD"},
        {"\xF4\x8F\xBF\xBD", "U+10FFFD"},
        {"\xE2\x82\xAC", "euro sign"},
    };
    for (const auto& c : cases) {
        const char* const bytes = c.first;
        const char* const why = c.second;
        INFO(why);
        CHECK(topic::is_valid_topic_utf8(bytes));
        CHECK(name_ok(bytes));
        CHECK(filter_ok(std::string(bytes) + "/+"));
    }
    CHECK(topic::is_valid_topic_utf8(""));
}

TEST_CASE("check_filter accepts well-formed wildcards") {
    for (const char* f :
         {"#", "+", "+/+", "+/#", "/#", "/+", "a/#", "a/+/b", "a//+", "+//#", "$SYS/#",
          "$SYS/+/load", "sport/tennis/+", "sport/+/player1", "sport/tennis/player1/#", "a/b/c"}) {
        INFO(f);
        CHECK(filter_ok(f));
    }
}

TEST_CASE("check_filter refuses misplaced wildcards") {
    for (const char* f : {"a/#/b", "a#", "#a", "a/b+", "+a", "a/+b/c", "#/", "#/a", "##", "++",
                          "+#", "a/b#", "sport/tennis#", "sport+", "a/#/#", "/#/"}) {
        INFO(f);
        expect_invalid(topic::check_filter(f));
    }
}

TEST_CASE("matches: MQTT 3.1.1 §4.7 examples") {
    // §4.7.1.2 multi-level wildcard
    CHECK(topic::matches("sport/tennis/player1/#", "sport/tennis/player1"));
    CHECK(topic::matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
    CHECK(topic::matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
    CHECK(topic::matches("sport/#", "sport"));
    CHECK(topic::matches("#", "sport"));
    CHECK(topic::matches("#", "/"));
    CHECK(topic::matches("#", "a/b/c/d/e"));
    CHECK_FALSE(topic::matches("sport/tennis/player1/#", "sport/tennis"));
    CHECK_FALSE(topic::matches("sport/tennis/player1/#", "sport/tennis/player2"));
    CHECK_FALSE(topic::matches("sport/#", "sports"));

    // §4.7.1.3 single-level wildcard
    CHECK(topic::matches("sport/tennis/+", "sport/tennis/player1"));
    CHECK(topic::matches("sport/tennis/+", "sport/tennis/player2"));
    CHECK_FALSE(topic::matches("sport/tennis/+", "sport/tennis/player1/ranking"));
    CHECK_FALSE(topic::matches("sport/+", "sport"));
    CHECK(topic::matches("sport/+", "sport/"));
    CHECK(topic::matches("+", "a"));
    CHECK_FALSE(topic::matches("+", "a/b"));
    CHECK_FALSE(topic::matches("+", "/"));
    CHECK(topic::matches("+/+", "/finance"));
    CHECK(topic::matches("/+", "/finance"));
    CHECK_FALSE(topic::matches("+", "/finance"));
    CHECK(topic::matches("+/tennis/#", "sport/tennis/player1"));
    CHECK(topic::matches("+/tennis/#", "sport/tennis"));
    CHECK(topic::matches("a/+/#", "a/"));
    CHECK(topic::matches("+/+", "/"));

    // Literal levels are compared exactly, empty levels included.
    CHECK(topic::matches("a/b", "a/b"));
    CHECK_FALSE(topic::matches("a/b", "a/b/"));
    CHECK_FALSE(topic::matches("a/b/", "a/b"));
    CHECK_FALSE(topic::matches("a//b", "a/b"));
    CHECK_FALSE(topic::matches("a", "A"));
    CHECK_FALSE(topic::matches("a/b", "a"));
    CHECK_FALSE(topic::matches("a", "a/b"));
    CHECK(topic::matches("/", "/"));
    CHECK_FALSE(topic::matches("/", "a"));
}

TEST_CASE("matches: $-topics are hidden from leading wildcards (§4.7.2)") {
    CHECK_FALSE(topic::matches("#", "$SYS"));
    CHECK_FALSE(topic::matches("#", "$SYS/broker/load"));
    CHECK_FALSE(topic::matches("+", "$SYS"));
    CHECK_FALSE(topic::matches("+/x", "$SYS/x"));
    CHECK_FALSE(topic::matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    CHECK_FALSE(topic::matches("+/#", "$SYS/a"));
    CHECK(topic::matches("$SYS/#", "$SYS/a"));
    CHECK(topic::matches("$SYS/#", "$SYS"));
    CHECK(topic::matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    CHECK(topic::matches("$SYS/+", "$SYS/x"));
    CHECK(topic::matches("$", "$"));
    // Only the first level counts: '$' deeper down is an ordinary character.
    CHECK(topic::matches("a/+", "a/$x"));
    CHECK(topic::matches("a/#", "a/$x/y"));
    CHECK(topic::matches("#", "a$"));
    CHECK(topic::matches("+", "x$SYS"));
}

TEST_CASE("matches agrees with a level-by-level reference on every small case") {
    // All filters and names of up to 4 levels over a small alphabet: compared exhaustively.
    const auto filters = all_topics({"a", "b", "", "$x", "+", "#"}, 4);
    const auto names = all_topics({"a", "b", "", "$x"}, 4);
    std::size_t valid_pairs = 0;
    std::size_t matching = 0;
    for (const auto& f : filters) {
        if (!filter_ok(f)) continue;
        for (const auto& n : names) {
            if (!name_ok(n)) continue;
            ++valid_pairs;
            const bool expected = reference_matches(f, n);
            if (topic::matches(f, n) != expected) {
                FAIL_CHECK("matches(\"" << f << "\", \"" << n << "\") should be " << expected);
            }
            matching += expected ? 1 : 0;
        }
    }
    // The universe really exercises both outcomes.
    CHECK(valid_pairs > 100000);
    CHECK(matching > 1000);
}

TEST_CASE("split_shared") {
    auto s = topic::split_shared("$share/group/sport/#");
    REQUIRE(s.has_value());
    CHECK(s->group == "group");
    CHECK(s->filter == "sport/#");

    s = topic::split_shared("$share/g/+");
    REQUIRE(s.has_value());
    CHECK(s->group == "g");
    CHECK(s->filter == "+");

    s = topic::split_shared("$share/g//a");  // the filter may start with an empty level
    REQUIRE(s.has_value());
    CHECK(s->filter == "/a");

    CHECK_FALSE(topic::split_shared("sport/#").has_value());
    CHECK_FALSE(topic::split_shared("$share").has_value());
    CHECK_FALSE(topic::split_shared("$share/").has_value());
    CHECK_FALSE(topic::split_shared("$share/group").has_value());
    CHECK_FALSE(topic::split_shared("$share/group/").has_value());
    CHECK_FALSE(topic::split_shared("$share//a").has_value());
    CHECK_FALSE(topic::split_shared("$SHARE/g/a").has_value());  // case matters
    CHECK_FALSE(topic::split_shared("$shared/g/a").has_value());
    CHECK_FALSE(topic::split_shared("x/$share/g/a").has_value());
}

TEST_CASE("check_filter on shared subscriptions") {
    CHECK(filter_ok("$share/group/sport/#"));
    CHECK(filter_ok("$share/g/+"));
    CHECK(filter_ok("$share/g/a/+/b"));
    CHECK(filter_ok("$share/g/$SYS/#"));
    expect_invalid(topic::check_filter("$share/group"));
    expect_invalid(topic::check_filter("$share/group/"));
    expect_invalid(topic::check_filter("$share//a"));
    expect_invalid(topic::check_filter("$share/"));
    expect_invalid(topic::check_filter("$share/g+/a"));
    expect_invalid(topic::check_filter("$share/+/a"));
    expect_invalid(topic::check_filter("$share/#/a"));
    expect_invalid(topic::check_filter("$share/g/a/#/b"));
    expect_invalid(topic::check_filter("$share/g/a#"));
    expect_invalid(topic::check_filter("$share/g/\xC0\xAF"));
    // "$share" alone is an ordinary (if odd) filter.
    CHECK(filter_ok("$share"));
}

TEST_CASE("covers: a wide filter covers what it always matches") {
    CHECK(topic::covers("a/#", "a"));
    CHECK(topic::covers("a/#", "a/+"));
    CHECK(topic::covers("a/#", "a/b/c"));
    CHECK(topic::covers("a/#", "a/#"));
    CHECK(topic::covers("a/#", "a/+/#"));
    CHECK(topic::covers("#", "#"));
    CHECK(topic::covers("#", "a"));
    CHECK(topic::covers("#", "+/+/#"));
    CHECK(topic::covers("#", "+/#"));
    CHECK(topic::covers("+/#", "#"));  // every topic has a first level: the two are the same
    CHECK(topic::covers("+/#", "+"));
    CHECK(topic::covers("+", "+"));
    CHECK(topic::covers("+", "a"));
    CHECK(topic::covers("+/+", "a/+"));
    CHECK(topic::covers("+/+", "/"));
    CHECK(topic::covers("a/+/#", "a/+"));  // "a/+/#" matches "a/x" through its parent level
    CHECK(topic::covers("a/b", "a/b"));
    CHECK(topic::covers("$SYS/#", "$SYS/broker/+"));
    CHECK(topic::covers("$SYS/#", "$SYS"));
    CHECK(topic::covers("$SYS/+", "$SYS/a"));
    CHECK(topic::covers("a/$x/#", "a/$x/y"));
}

TEST_CASE("covers: and refuses what it does not") {
    CHECK_FALSE(topic::covers("a/+", "a/#"));
    CHECK_FALSE(topic::covers("a/+", "a"));
    CHECK_FALSE(topic::covers("a/+", "a/b/c"));
    CHECK_FALSE(topic::covers("a", "a/#"));
    CHECK_FALSE(topic::covers("a", "+"));
    CHECK_FALSE(topic::covers("a/b", "a/+"));
    CHECK_FALSE(topic::covers("a/b/#", "a/#"));
    CHECK_FALSE(topic::covers("a/#", "b/#"));
    CHECK_FALSE(topic::covers("a/#", "#"));
    CHECK_FALSE(topic::covers("+", "#"));
    CHECK_FALSE(topic::covers("+/+", "+"));
    CHECK_FALSE(topic::covers("+/+/#", "+/#"));  // "+/#" matches "a", "+/+/#" does not
    CHECK_FALSE(topic::covers("a/+/#", "a/#"));  // "a/#" matches "a", "a/+/#" does not
    // $-topics: a leading wildcard in the wide filter never reaches them.
    CHECK_FALSE(topic::covers("+/#", "$SYS/#"));
    CHECK_FALSE(topic::covers("#", "$SYS/#"));
    CHECK_FALSE(topic::covers("#", "$SYS"));
    CHECK_FALSE(topic::covers("+", "$SYS"));
    CHECK_FALSE(topic::covers("+/x", "$SYS/x"));
    CHECK_FALSE(topic::covers("$SYS/#", "#"));
    CHECK_FALSE(topic::covers("$SYS/+", "+/+"));
}

TEST_CASE("covers agrees exactly with brute force over a complete universe") {
    // Filters of up to 3 levels over {a, b, "", $x, +, #}. A name that tells two such filters
    // apart can always be shortened to at most 4 levels and have every level replaced by one
    // of the filters' literals, a fresh literal "z", or (first level only) a fresh "$y": so
    // comparing match sets over that universe decides covers() exactly.
    //
    // The universe includes the empty string "" as a (hypothetical) one-level name: covers()
    // reasons about levels and does not use the fact that "" is not a valid topic name, so
    // for instance covers("/+/#", "/#") is false although no valid name tells the two apart
    // ("/#" matches "" and "/+/#" does not). With "" included, covers() must be exact; and being
    // exact over a superset of the valid names, it is in particular sound for them: it never
    // says "covers" when some valid name is matched by the narrow filter only.
    std::vector<std::string> filters;
    for (const auto& f : all_topics({"a", "b", "", "$x", "+", "#"}, 3)) {
        if (filter_ok(f)) filters.push_back(f);
    }
    std::vector<std::string> names;
    for (const auto& n : all_topics({"a", "b", "", "$x", "z", "$y"}, 4)) {
        if (name_ok(n) || n.empty()) names.push_back(n);
    }
    REQUIRE(std::count(names.begin(), names.end(), "") == 1);
    REQUIRE(names.size() <= 2048);
    std::vector<std::bitset<2048>> matched(filters.size());
    for (std::size_t i = 0; i < filters.size(); ++i) {
        for (std::size_t k = 0; k < names.size(); ++k) {
            matched[i][k] = reference_matches(filters[i], names[k]);
        }
    }
    std::size_t covering_pairs = 0;
    for (std::size_t w = 0; w < filters.size(); ++w) {
        // covers(f, f): every valid non-shared filter covers itself.
        if (!topic::covers(filters[w], filters[w]))
            FAIL_CHECK("covers(f, f) fails for " << filters[w]);
        for (std::size_t n = 0; n < filters.size(); ++n) {
            const bool expected = (matched[n] & ~matched[w]).none();
            covering_pairs += expected ? 1 : 0;
            if (topic::covers(filters[w], filters[n]) != expected) {
                FAIL_CHECK("covers(\"" << filters[w] << "\", \"" << filters[n] << "\") should be "
                                       << expected);
            }
        }
    }
    CHECK(filters.size() > 150);
    CHECK(covering_pairs > filters.size());  // more than the reflexive pairs
}

TEST_CASE("topic::overlaps: some topic matches both filters") {
    struct row {
        const char* a;
        const char* b;
        bool overlap;
    };
    const row rows[] = {
        {"a/b", "a/b", true},       {"a/b", "a/c", false},
        {"a/+", "a/b", true},       {"a/+", "+/b", true},
        {"a/+", "a", false},        {"a/#", "a", true},
        {"a/#", "b/#", false},      {"#", "a/b/c", true},
        {"+/+", "a", false},        {"+/#", "a", true},
        {"a/+/c", "a/b/+", true},   {"a/+/c", "a/b/d", false},
        {"#", "$SYS/x", false},     {"+/x", "$SYS/x", false},
        {"$SYS/#", "$SYS/x", true}, {"$SYS/+", "$SYS/x/y", false},
        {"a//b", "a/+/b", true},    {"/#", "+/x", true},
        {"a/b/c", "a/b", false},    {"a/b/#", "a/b", true},
        {"a/+/#", "a", false},
    };
    for (const row& r : rows) {
        CAPTURE(r.a);
        CAPTURE(r.b);
        CHECK(mqttws::topic::overlaps(r.a, r.b) == r.overlap);
        CHECK(mqttws::topic::overlaps(r.b, r.a) == r.overlap);
    }
}
