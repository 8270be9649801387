// Unit tests for core/topic_trie: find / get_or_create / erase / for_each, match(name) against
// a trie of filters and match_names(filter) against a trie of names, each checked against
// brute-force topic::matches on random but reproducible input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/topic.hpp"
#include "core/topic_trie.hpp"

using mqttws::topic_trie;
namespace topic = mqttws::topic;

namespace {

struct entry {
    std::string key;
    int hits = 0;
};

using trie = topic_trie<entry>;

entry& put(trie& t, const std::string& key) {
    entry& e = t.get_or_create(key);
    e.key = key;
    return e;
}

std::set<std::string> matching_filters(trie& t, std::string_view name) {
    std::set<std::string> out;
    t.match(name, [&](entry& e) {
        const bool fresh = out.insert(e.key).second;
        if (!fresh) FAIL_CHECK("match visited " << e.key << " twice for " << name);
    });
    return out;
}

std::set<std::string> matching_names(trie& t, std::string_view filter) {
    std::set<std::string> out;
    t.match_names(filter, [&](entry& e) {
        const bool fresh = out.insert(e.key).second;
        if (!fresh) FAIL_CHECK("match_names visited " << e.key << " twice for " << filter);
    });
    return out;
}

std::set<std::string> all_keys(trie& t) {
    std::set<std::string> out;
    t.for_each([&](entry& e) { out.insert(e.key); });
    return out;
}

// Reproducible random topics: levels drawn from a small alphabet so that collisions, empty
// levels and `$` first levels are frequent. Uses the raw engine output, not a distribution,
// so the sequence is the same with every standard library.
class topic_source {
  public:
    explicit topic_source(std::uint32_t seed) : rng_(seed) {}

    std::string name() {
        static const char* const levels[] = {"a", "b", "c", "", "$SYS", "$x", "sport", "a$"};
        return build(levels, std::size(levels), false);
    }
    std::string filter() {
        static const char* const levels[] = {"a",     "b",  "c", "",  "$SYS", "$x",
                                             "sport", "a$", "+", "+", "#",    "#"};
        return build(levels, std::size(levels), true);
    }

  private:
    std::string build(const char* const* levels, std::size_t count, bool filter) {
        const std::size_t depth = 1 + rng_() % 5;
        std::string out;
        for (std::size_t i = 0; i < depth; ++i) {
            std::string level = levels[rng_() % count];
            if (filter && level == "#" && i + 1 < depth) level = "+";
            if (i > 0) out += '/';
            out += level;
            if (level == "#") break;
        }
        if (out.empty()) out = "a";  // a single empty level is the invalid empty topic
        return out;
    }

    std::mt19937 rng_;
};

}  // namespace

TEST_CASE("topic_trie: get_or_create, find, size") {
    trie t;
    CHECK(t.empty());
    CHECK(t.size() == 0);
    CHECK(t.find("a") == nullptr);

    entry& a = put(t, "a/b");
    CHECK(t.size() == 1);
    CHECK_FALSE(t.empty());
    CHECK(t.find("a/b") == &a);
    CHECK(t.find("a") == nullptr);  // an inner node without a value
    CHECK(t.find("a/b/c") == nullptr);
    CHECK(t.find("a/+") == nullptr);
    CHECK(t.find("a/#") == nullptr);

    // get_or_create on an existing key returns the same value and does not count it twice.
    a.hits = 7;
    CHECK(&t.get_or_create("a/b") == &a);
    CHECK(t.get_or_create("a/b").hits == 7);
    CHECK(t.size() == 1);

    // Wildcards are stored as their own children, distinct from each other and from literals.
    put(t, "a/+");
    put(t, "a/#");
    put(t, "a");
    put(t, "a/");
    put(t, "/a");
    CHECK(t.size() == 6);
    CHECK(t.find("a/+") != t.find("a/#"));
    CHECK(t.find("a/+")->key == "a/+");
    CHECK(t.find("a/#")->key == "a/#");
    CHECK(t.find("a")->key == "a");
    CHECK(t.find("a/")->key == "a/");
    CHECK(t.find("/a")->key == "/a");
    CHECK(t.find("a/b")->key == "a/b");
    CHECK(all_keys(t) == std::set<std::string>{"a", "a/", "/a", "a/b", "a/+", "a/#"});

    // Values stay put while the trie grows (pointers are handed out to the engine).
    for (int i = 0; i < 1000; ++i)
        put(t, "grow/" + std::to_string(i));
    CHECK(t.find("a/b") == &a);
    CHECK(a.hits == 7);
}

TEST_CASE("topic_trie: erase removes one key and prunes only empty nodes") {
    trie t;
    put(t, "a");
    put(t, "a/b/c");
    put(t, "a/+/c");
    put(t, "a/#");
    REQUIRE(t.size() == 4);

    CHECK_FALSE(t.erase("a/b"));  // an inner node without a value
    CHECK_FALSE(t.erase("x/y"));  // no such path
    CHECK_FALSE(t.erase("a/b/c/d"));
    CHECK(t.size() == 4);

    CHECK(t.erase("a/b/c"));
    CHECK_FALSE(t.erase("a/b/c"));  // only once
    CHECK(t.size() == 3);
    CHECK(t.find("a/b/c") == nullptr);
    CHECK(t.find("a/+/c") != nullptr);
    CHECK(t.find("a") != nullptr);
    CHECK(matching_filters(t, "a/b/c") == std::set<std::string>{"a/+/c", "a/#"});

    CHECK(t.erase("a"));  // a node with children keeps them
    CHECK(t.find("a/+/c") != nullptr);
    CHECK(t.find("a/#") != nullptr);
    CHECK(matching_filters(t, "a") == std::set<std::string>{"a/#"});

    CHECK(t.erase("a/#"));
    CHECK(t.erase("a/+/c"));
    CHECK(t.empty());
    CHECK(all_keys(t).empty());
    CHECK(matching_filters(t, "a/b/c").empty());

    // A pruned path can be created again.
    put(t, "a/+/c");
    CHECK(matching_filters(t, "a/b/c") == std::set<std::string>{"a/+/c"});
}

TEST_CASE("topic_trie: match follows MQTT 3.1.1 §4.7") {
    trie t;
    for (const char* f :
         {"sport/tennis/player1/#", "sport/#", "#", "+", "+/+", "/+", "sport/tennis/+",
          "sport/+/player1", "$SYS/#", "$SYS/+", "+/#", "sport", "sport/tennis/player1", "a/+/#"}) {
        put(t, f);
    }
    using S = std::set<std::string>;
    CHECK(matching_filters(t, "sport/tennis/player1") ==
          S{"sport/tennis/player1/#", "sport/#", "#", "+/#", "sport/tennis/+", "sport/+/player1",
            "sport/tennis/player1"});
    CHECK(matching_filters(t, "sport") == S{"sport/#", "#", "+", "+/#", "sport"});
    CHECK(matching_filters(t, "/finance") == S{"#", "+/+", "/+", "+/#"});
    CHECK(matching_filters(t, "a/") == S{"#", "+/+", "+/#", "a/+/#"});
    CHECK(matching_filters(t, "$SYS") == S{"$SYS/#"});
    CHECK(matching_filters(t, "$SYS/x") == S{"$SYS/#", "$SYS/+"});
    CHECK(matching_filters(t, "$SYS/x/y") == S{"$SYS/#"});
    CHECK(matching_filters(t, "$other").empty());
    CHECK(matching_filters(t, "x/$SYS") == S{"#", "+/+", "+/#"});
}

TEST_CASE("topic_trie: match_names on a trie of names") {
    trie t;
    for (const char* n :
         {"a", "a/b", "a/b/c", "a/", "/a", "/", "b", "$SYS", "$SYS/load", "$SYS/x/y", "x/$SYS"}) {
        put(t, n);
    }
    using S = std::set<std::string>;
    CHECK(matching_names(t, "#") == S{"a", "a/b", "a/b/c", "a/", "/a", "/", "b", "x/$SYS"});
    CHECK(matching_names(t, "a/#") == S{"a", "a/b", "a/b/c", "a/"});
    CHECK(matching_names(t, "a/+") == S{"a/b", "a/"});
    CHECK(matching_names(t, "+") == S{"a", "b"});
    CHECK(matching_names(t, "+/+") == S{"a/b", "a/", "/a", "/", "x/$SYS"});
    CHECK(matching_names(t, "+/#") == S{"a", "a/b", "a/b/c", "a/", "/a", "/", "b", "x/$SYS"});
    CHECK(matching_names(t, "$SYS/#") == S{"$SYS", "$SYS/load", "$SYS/x/y"});
    CHECK(matching_names(t, "$SYS/+") == S{"$SYS/load"});
    CHECK(matching_names(t, "a/b") == S{"a/b"});
    CHECK(matching_names(t, "a/b/c/#") == S{"a/b/c"});
    CHECK(matching_names(t, "a/b/c/+").empty());
    CHECK(matching_names(t, "nope/#").empty());
    CHECK(matching_names(t, "+/$SYS") == S{"x/$SYS"});
}

TEST_CASE("topic_trie: match agrees with topic::matches on random filters") {
    topic_source source(20240601);
    trie t;
    std::set<std::string> filters;
    while (filters.size() < 400) {
        const std::string f = source.filter();
        REQUIRE_MESSAGE(!topic::check_filter(f), f);
        filters.insert(f);
        put(t, f);
    }
    CHECK(t.size() == filters.size());
    CHECK(all_keys(t) == filters);

    std::vector<std::string> names;
    for (int i = 0; i < 600; ++i)
        names.push_back(source.name());
    names.insert(names.end(), {"$SYS", "/", "a/", "/a", "$x/a/b/c/d/e"});

    const auto check_all = [&] {
        std::size_t total = 0;
        for (const auto& n : names) {
            REQUIRE_MESSAGE(!topic::check_name(n), n);
            std::set<std::string> expected;
            for (const auto& f : filters) {
                if (topic::matches(f, n)) expected.insert(f);
            }
            const auto got = matching_filters(t, n);
            if (got != expected) FAIL_CHECK("trie and topic::matches disagree for " << n);
            total += got.size();
        }
        return total;
    };
    const std::size_t matches_before = check_all();
    CHECK(matches_before > 1000);  // the input really matches a lot

    // Erase every other filter: pruning must not lose the survivors.
    bool drop = false;
    for (auto it = filters.begin(); it != filters.end();) {
        if ((drop = !drop)) {
            CHECK(t.erase(*it));
            it = filters.erase(it);
        } else {
            ++it;
        }
    }
    CHECK(t.size() == filters.size());
    CHECK(all_keys(t) == filters);
    const std::size_t matches_after = check_all();
    CHECK(matches_after < matches_before);
    CHECK(matches_after > 0);
}

TEST_CASE("topic_trie: match_names agrees with topic::matches on random names") {
    topic_source source(77);
    trie t;
    std::set<std::string> names;
    while (names.size() < 300) {
        const std::string n = source.name();
        names.insert(n);
        put(t, n);
    }
    for (const char* n : {"$SYS", "/", "a/", "/a", "a//b"}) {
        names.insert(n);
        put(t, n);
    }
    std::vector<std::string> filters;
    for (int i = 0; i < 500; ++i)
        filters.push_back(source.filter());
    filters.insert(filters.end(), {"#", "+", "+/#", "$SYS/#", "/#", "+/+", "a/#"});

    const auto check_all = [&] {
        std::size_t total = 0;
        for (const auto& f : filters) {
            std::set<std::string> expected;
            for (const auto& n : names) {
                if (topic::matches(f, n)) expected.insert(n);
            }
            const auto got = matching_names(t, f);
            if (got != expected) FAIL_CHECK("match_names and topic::matches disagree for " << f);
            total += got.size();
        }
        return total;
    };
    const std::size_t before = check_all();
    CHECK(before > 1000);

    bool drop = false;
    for (auto it = names.begin(); it != names.end();) {
        if ((drop = !drop)) {
            CHECK(t.erase(*it));
            it = names.erase(it);
        } else {
            ++it;
        }
    }
    const std::size_t after = check_all();
    CHECK(after < before);
    CHECK(after > 0);
}

TEST_CASE("topic_trie: for_each visits every value once and may modify it") {
    trie t;
    for (const char* k : {"a", "a/+", "a/#", "+", "#", "/", "$SYS/#", "b/c/d"})
        put(t, k);
    int visits = 0;
    t.for_each([&](entry& e) {
        ++visits;
        ++e.hits;
    });
    CHECK(visits == 8);
    for (const char* k : {"a", "a/+", "a/#", "+", "#", "/", "$SYS/#", "b/c/d"}) {
        INFO(k);
        REQUIRE(t.find(k) != nullptr);
        CHECK(t.find(k)->hits == 1);
    }
}

TEST_CASE("topic_trie: moving a trie keeps lookups working") {
    // retained_store::clear() assigns a fresh trie; keys are views into the nodes, so a move
    // must not leave them dangling.
    trie t;
    for (int i = 0; i < 50; ++i)
        put(t, "k/" + std::to_string(i) + "/leaf");
    trie moved = std::move(t);
    CHECK(moved.size() == 50);
    REQUIRE(moved.find("k/17/leaf") != nullptr);
    CHECK(moved.find("k/17/leaf")->key == "k/17/leaf");
    CHECK(matching_filters(moved, "k/3/leaf") == std::set<std::string>{"k/3/leaf"});
    moved = {};
    CHECK(moved.empty());
    CHECK(moved.find("k/17/leaf") == nullptr);
}
