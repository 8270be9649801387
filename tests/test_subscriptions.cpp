// Unit tests for core/subscriptions: the ref-counted registry of filters held at the broker.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "core/session.hpp"
#include "core/subscriptions.hpp"

using mqttws::session;
using mqttws::session_key;

namespace {

// What an owner keeps per filter; the registry carries it and never looks at it.
struct probe_state {
    int marker = 0;
};
using subscription_registry = mqttws::subscription_registry<probe_state>;
using upstream_filter = mqttws::registered_filter<probe_state>;

session make_session(std::uint64_t key) {
    return session(session_key{key}, "");
}

std::set<std::string> matched(subscription_registry& reg, std::string_view topic) {
    std::set<std::string> out;
    reg.match(topic, [&](upstream_filter& f) { out.insert(f.filter); });
    return out;
}

bool has_subscriber(const upstream_filter& f, const session* who) {
    return std::any_of(f.subscribers.begin(), f.subscribers.end(),
                       [&](const upstream_filter::subscriber& s) { return s.who == who; });
}

}  // namespace

TEST_CASE("subscriptions: the first add says is_first, later adds do not") {
    session s1 = make_session(1), s2 = make_session(2);
    subscription_registry reg;
    CHECK(reg.filter_count() == 0);

    const auto r1 = reg.add("sport/#", &s1, 1);
    REQUIRE(r1.entry != nullptr);
    CHECK(r1.is_first);
    CHECK_FALSE(r1.qos_changed);
    CHECK(r1.entry->filter == "sport/#");
    CHECK(r1.entry->upstream_qos == 1);
    CHECK(r1.entry->state.marker == 0);
    CHECK(reg.filter_count() == 1);
    CHECK(reg.find("sport/#") == r1.entry);

    const auto r2 = reg.add("sport/#", &s2, 1);
    CHECK(r2.entry == r1.entry);
    CHECK_FALSE(r2.is_first);
    CHECK_FALSE(r2.qos_changed);
    CHECK(r2.entry->subscribers.size() == 2);
    CHECK(reg.filter_count() == 1);

    // Adding the same session again only updates it: no duplicate subscriber.
    const auto r3 = reg.add("sport/#", &s2, 1);
    CHECK_FALSE(r3.is_first);
    CHECK_FALSE(r3.qos_changed);
    CHECK(r3.entry->subscribers.size() == 2);

    // Another filter is a separate entry, first again.
    const auto r4 = reg.add("sport/+", &s1, 0);
    CHECK(r4.is_first);
    CHECK(r4.entry != r1.entry);
    CHECK(reg.filter_count() == 2);
}

TEST_CASE("subscriptions: upstream_qos is the highest subscriber qos") {
    session s1 = make_session(1), s2 = make_session(2), s3 = make_session(3);
    subscription_registry reg;

    auto r = reg.add("t", &s1, 0);
    CHECK(r.entry->upstream_qos == 0);
    CHECK_FALSE(r.qos_changed);  // is_first: the subscribe carries the qos anyway

    r = reg.add("t", &s2, 2);
    CHECK(r.qos_changed);
    CHECK(r.entry->upstream_qos == 2);

    r = reg.add("t", &s3, 1);
    CHECK_FALSE(r.qos_changed);
    CHECK(r.entry->upstream_qos == 2);
    CHECK(r.entry->max_subscriber_qos() == 2);

    // The qos-2 subscriber lowers its own qos: the maximum goes down to 1.
    r = reg.add("t", &s2, 0);
    CHECK(r.qos_changed);
    CHECK(r.entry->upstream_qos == 1);
    CHECK(r.entry->subscribers.size() == 3);

    // ... and back up.
    r = reg.add("t", &s1, 2);
    CHECK(r.qos_changed);
    CHECK(r.entry->upstream_qos == 2);
}

TEST_CASE("subscriptions: remove says was_last and qos_changed") {
    session s1 = make_session(1), s2 = make_session(2), s3 = make_session(3);
    subscription_registry reg;
    reg.add("a/+", &s1, 0);
    reg.add("a/+", &s2, 2);
    reg.add("a/+", &s3, 1);
    REQUIRE(reg.find("a/+")->upstream_qos == 2);

    // The qos-2 subscriber leaves: others remain, the upstream qos drops to 1.
    auto r = reg.remove("a/+", &s2);
    CHECK(r.removed);
    CHECK_FALSE(r.was_last);
    CHECK(r.qos_changed);
    CHECK(r.upstream_qos == 1);
    REQUIRE(reg.find("a/+") != nullptr);
    CHECK(reg.find("a/+")->upstream_qos == 1);
    CHECK_FALSE(has_subscriber(*reg.find("a/+"), &s2));
    CHECK(has_subscriber(*reg.find("a/+"), &s1));
    CHECK(has_subscriber(*reg.find("a/+"), &s3));

    // Removing it again changes nothing.
    r = reg.remove("a/+", &s2);
    CHECK_FALSE(r.removed);
    CHECK_FALSE(r.was_last);
    CHECK_FALSE(r.qos_changed);
    CHECK(reg.find("a/+")->subscribers.size() == 2);

    // The qos-0 subscriber leaves: the maximum stays 1.
    r = reg.remove("a/+", &s1);
    CHECK(r.removed);
    CHECK_FALSE(r.was_last);
    CHECK_FALSE(r.qos_changed);
    CHECK(r.upstream_qos == 1);

    // The last one leaves: the entry is gone.
    r = reg.remove("a/+", &s3);
    CHECK(r.removed);
    CHECK(r.was_last);
    CHECK(reg.find("a/+") == nullptr);
    CHECK(reg.filter_count() == 0);
    CHECK(matched(reg, "a/b").empty());
}

TEST_CASE("subscriptions: removing what is not there") {
    session s1 = make_session(1), s2 = make_session(2);
    subscription_registry reg;

    auto r = reg.remove("never/added", &s1);
    CHECK_FALSE(r.removed);
    CHECK_FALSE(r.was_last);
    CHECK_FALSE(r.qos_changed);

    reg.add("a/b", &s1, 1);
    r = reg.remove("a/b", &s2);  // known filter, unknown session
    CHECK_FALSE(r.removed);
    CHECK_FALSE(r.was_last);
    CHECK(reg.find("a/b") != nullptr);

    r = reg.remove("a", &s1);  // an inner node of the trie, not a held filter
    CHECK_FALSE(r.removed);
    r = reg.remove("a/+", &s1);
    CHECK_FALSE(r.removed);
    r = reg.remove("a/b/c", &s1);
    CHECK_FALSE(r.removed);
    CHECK(reg.filter_count() == 1);
    CHECK(reg.find("a/b")->subscribers.size() == 1);
}

TEST_CASE("subscriptions: a filter can be held again after the last subscriber left") {
    session s1 = make_session(1);
    subscription_registry reg;
    auto a = reg.add("x/#", &s1, 2);
    a.entry->state.marker = 9;
    int erased_marker = 0;
    CHECK(reg.remove("x/#", &s1, [&](upstream_filter& e) { erased_marker = e.state.marker; })
              .was_last);
    CHECK(erased_marker == 9);  // the owner saw its state before the entry went

    // A fresh entry: no upstream state carried over from the old one.
    a = reg.add("x/#", &s1, 0);
    CHECK(a.is_first);
    CHECK_FALSE(a.qos_changed);
    CHECK(a.entry->upstream_qos == 0);
    CHECK(a.entry->state.marker == 0);
    CHECK(a.entry->filter == "x/#");
}

TEST_CASE("subscriptions: match routes by topic through the trie") {
    session s1 = make_session(1), s2 = make_session(2);
    subscription_registry reg;
    reg.add("sport/#", &s1, 0);
    reg.add("sport/tennis/+", &s2, 1);
    reg.add("#", &s2, 0);
    reg.add("$SYS/#", &s1, 0);
    reg.add("news", &s1, 0);

    using S = std::set<std::string>;
    CHECK(matched(reg, "sport/tennis/player1") == S{"sport/#", "sport/tennis/+", "#"});
    CHECK(matched(reg, "sport") == S{"sport/#", "#"});
    CHECK(matched(reg, "news") == S{"news", "#"});
    CHECK(matched(reg, "$SYS/broker/load") == S{"$SYS/#"});
    CHECK(matched(reg, "weather") == S{"#"});

    reg.remove("#", &s2);
    CHECK(matched(reg, "weather").empty());
    CHECK(matched(reg, "sport") == S{"sport/#"});

    std::set<std::string> all;
    reg.for_each([&](upstream_filter& f) { all.insert(f.filter); });
    CHECK(all == S{"sport/#", "sport/tennis/+", "$SYS/#", "news"});
}

TEST_CASE("subscriptions: many sessions, random order of leaving") {
    // Ref counting must hold whatever order sessions leave in.
    std::vector<session> sessions;
    sessions.reserve(40);
    for (std::uint64_t i = 0; i < 40; ++i)
        sessions.push_back(make_session(i));
    subscription_registry reg;
    for (std::size_t i = 0; i < sessions.size(); ++i) {
        const auto r = reg.add("load/+", &sessions[i], static_cast<std::uint8_t>(i % 3));
        CHECK(r.is_first == (i == 0));
    }
    CHECK(reg.find("load/+")->upstream_qos == 2);
    std::vector<std::size_t> order(sessions.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = (i * 17) % order.size();
    for (std::size_t k = 0; k < order.size(); ++k) {
        const auto r = reg.remove("load/+", &sessions[order[k]]);
        CHECK(r.removed);
        CHECK(r.was_last == (k + 1 == order.size()));
        if (!r.was_last) {
            // The reported qos is the max over the sessions still subscribed.
            std::uint8_t expected = 0;
            for (std::size_t j = k + 1; j < order.size(); ++j) {
                expected = std::max(expected, static_cast<std::uint8_t>(order[j] % 3));
            }
            CHECK(r.upstream_qos == expected);
            CHECK(reg.find("load/+")->subscribers.size() == order.size() - k - 1);
        }
    }
    CHECK(reg.filter_count() == 0);
}
