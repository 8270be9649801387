// Unit tests for core/retained_store: MQTT retained semantics, byte accounting and the bound,
// wildcard lookups and eviction.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/retained_store.hpp"

using mqttws::retained_message;
using mqttws::retained_store;

namespace {

// topic -> payload of every message `filter` finds.
std::map<std::string, std::string> lookup(retained_store& store, std::string_view filter) {
    std::map<std::string, std::string> out;
    store.for_each_matching(filter, [&](const retained_message& m) {
        const bool fresh = out.emplace(m.topic, m.payload).second;
        if (!fresh) FAIL_CHECK("visited " << m.topic << " twice");
    });
    return out;
}

using M = std::map<std::string, std::string>;

}  // namespace

TEST_CASE("retained_store: put stores, replaces, and an empty payload deletes") {
    retained_store store(1 << 20);
    CHECK(store.size() == 0);
    CHECK(store.bytes() == 0);

    store.put("a/b", "one", 1);
    CHECK(store.size() == 1);
    CHECK(store.bytes() == 3 + 3);
    CHECK(lookup(store, "a/b") == M{{"a/b", "one"}});

    int seen_qos = -1;
    store.for_each_matching("a/b", [&](const retained_message& m) { seen_qos = m.qos; });
    CHECK(seen_qos == 1);

    // Replacing keeps one entry and re-counts the bytes.
    store.put("a/b", "three", 2);
    CHECK(store.size() == 1);
    CHECK(store.bytes() == 3 + 5);
    CHECK(lookup(store, "a/b") == M{{"a/b", "three"}});
    store.for_each_matching("a/b", [&](const retained_message& m) { seen_qos = m.qos; });
    CHECK(seen_qos == 2);

    store.put("a", "x", 0);
    CHECK(store.size() == 2);
    CHECK(store.bytes() == 8 + 2);

    // An empty payload deletes (MQTT 3.1.1 §3.3.1.3); deleting what is absent is harmless.
    store.put("a/b", "", 0);
    CHECK(store.size() == 1);
    CHECK(store.bytes() == 2);
    CHECK(lookup(store, "a/b").empty());
    CHECK(lookup(store, "a") == M{{"a", "x"}});
    store.put("a/b", "", 0);
    store.put("never/there", "", 0);
    CHECK(store.size() == 1);
    CHECK(store.bytes() == 2);
    CHECK_FALSE(store.overflowed());
}

TEST_CASE("retained_store: binary payloads are kept byte for byte") {
    retained_store store(1024);
    const std::string payload("\x00\xFF\x01\x00", 4);
    store.put("bin", payload, 0);
    CHECK(store.bytes() == 3 + 4);
    CHECK(lookup(store, "bin") == M{{"bin", payload}});
}

TEST_CASE("retained_store: wildcard lookups follow topic matching") {
    retained_store store(1 << 20);
    for (const char* t : {"sport", "sport/tennis", "sport/tennis/player1", "sport/golf", "/finance",
                          "$SYS/broker/load", "news/"}) {
        store.put(t, std::string("p:") + t, 0);
    }
    CHECK(lookup(store, "sport/#") == M{{"sport", "p:sport"},
                                        {"sport/tennis", "p:sport/tennis"},
                                        {"sport/tennis/player1", "p:sport/tennis/player1"},
                                        {"sport/golf", "p:sport/golf"}});
    CHECK(lookup(store, "sport/+") ==
          M{{"sport/tennis", "p:sport/tennis"}, {"sport/golf", "p:sport/golf"}});
    CHECK(lookup(store, "+/+") == M{{"sport/tennis", "p:sport/tennis"},
                                    {"sport/golf", "p:sport/golf"},
                                    {"/finance", "p:/finance"},
                                    {"news/", "p:news/"}});
    CHECK(lookup(store, "+") == M{{"sport", "p:sport"}});
    CHECK(lookup(store, "news/+") == M{{"news/", "p:news/"}});
    // $-topics: only a filter that names the first level finds them.
    CHECK(lookup(store, "#").size() == 6);
    CHECK(lookup(store, "#").count("$SYS/broker/load") == 0);
    CHECK(lookup(store, "+/broker/+").empty());
    CHECK(lookup(store, "$SYS/#") == M{{"$SYS/broker/load", "p:$SYS/broker/load"}});
    CHECK(lookup(store, "sport/tennis/player1") ==
          M{{"sport/tennis/player1", "p:sport/tennis/player1"}});
    CHECK(lookup(store, "nothing/#").empty());
}

TEST_CASE("retained_store: the byte bound") {
    // Cost of an entry: topic bytes + payload bytes.
    retained_store store(20);
    store.put("aaaa", "123456", 0);  // 10
    store.put("bbbb", "123456", 0);  // 20: exactly at the bound is fine
    CHECK(store.bytes() == 20);
    CHECK(store.size() == 2);
    CHECK_FALSE(store.overflowed());

    // A new topic past the bound is not stored.
    store.put("c", "1", 0);
    CHECK(store.overflowed());
    CHECK(store.size() == 2);
    CHECK(store.bytes() == 20);
    CHECK(lookup(store, "c").empty());

    // Replacing with a payload of the same size fits: the old cost is given back first.
    store.put("aaaa", "abcdef", 0);
    CHECK(store.bytes() == 20);
    CHECK(lookup(store, "aaaa") == M{{"aaaa", "abcdef"}});

    // Replacing with a smaller payload frees bytes; then a new small topic fits.
    store.put("aaaa", "ab", 0);
    CHECK(store.bytes() == 16);
    store.put("c", "123", 0);
    CHECK(store.bytes() == 20);
    CHECK(store.size() == 3);

    // Replacing with a payload that does not fit drops the old one: nothing stale is served.
    store.put("bbbb", "this payload is far too long", 0);
    CHECK(lookup(store, "bbbb").empty());
    CHECK(store.size() == 2);
    CHECK(store.bytes() == 10);
    CHECK(lookup(store, "#") == M{{"aaaa", "ab"}, {"c", "123"}});

    // The flag stays set (it reports that a late joiner may have missed something).
    store.put("c", "", 0);
    CHECK(store.overflowed());
}

TEST_CASE("retained_store: a single message bigger than the bound is never stored") {
    retained_store store(8);
    store.put("t", std::string(8, 'x'), 0);  // 9 bytes
    CHECK(store.overflowed());
    CHECK(store.size() == 0);
    CHECK(store.bytes() == 0);
}

TEST_CASE("retained_store: evict_under drops only topics no other filter holds") {
    retained_store store(1 << 20);
    for (const char* t : {"a/1", "a/2", "a/b/3", "b/1", "$SYS/x"})
        store.put(t, "v", 0);

    // The last subscriber of "a/#" left; "a/2" is still under another held filter.
    std::vector<std::string> asked;
    store.evict_under("a/#", [&](std::string_view topic) {
        asked.emplace_back(topic);
        return topic == "a/2";
    });
    std::sort(asked.begin(), asked.end());
    CHECK(asked == std::vector<std::string>{"a/1", "a/2", "a/b/3"});
    CHECK(lookup(store, "#") == M{{"a/2", "v"}, {"b/1", "v"}});
    CHECK(store.size() == 3);  // a/2, b/1, $SYS/x
    CHECK(store.bytes() == (3 + 1) * 2 + (6 + 1));

    // "#" does not reach $-topics, so they are not evicted by it.
    store.evict_under("#", [](std::string_view) { return false; });
    CHECK(store.size() == 1);
    CHECK(lookup(store, "$SYS/#") == M{{"$SYS/x", "v"}});
    store.evict_under("$SYS/+", [](std::string_view) { return false; });
    CHECK(store.size() == 0);
    CHECK(store.bytes() == 0);
}

TEST_CASE("retained_store: clear forgets everything, including the overflow") {
    retained_store store(10);
    store.put("a", "12345", 0);
    store.put("b", "1234567890", 0);
    REQUIRE(store.overflowed());
    store.clear();
    CHECK(store.size() == 0);
    CHECK(store.bytes() == 0);
    CHECK_FALSE(store.overflowed());
    CHECK(lookup(store, "#").empty());
    // Usable afterwards, with the same bound.
    store.put("a", "123456789", 0);
    CHECK(store.bytes() == 10);
    CHECK(lookup(store, "a") == M{{"a", "123456789"}});
    store.put("b", "1", 0);
    CHECK(store.overflowed());
}
