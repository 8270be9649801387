// core/id_map: a flat hash map from connection ids; checked against std::unordered_map over
// long random runs of inserts and erases (its erase moves entries back, the part easy to get
// wrong), and for the pattern the bridge makes: ids a stride apart, opened and closed forever.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/id_map.hpp"

using mqttws::id_map;

namespace {

// Every id of `reference` is found with its value, and a few that are not there are not.
void check_same(const id_map<std::string>& map,
                const std::unordered_map<std::uint64_t, std::string>& reference,
                std::uint64_t max_id) {
    REQUIRE(map.size() == reference.size());
    for (std::uint64_t id = 1; id <= max_id; ++id) {
        const auto it = reference.find(id);
        const std::string* found = map.find(id);
        if (it == reference.end()) {
            CHECK(found == nullptr);
        } else {
            REQUIRE(found != nullptr);
            CHECK(*found == it->second);
        }
    }
}

}  // namespace

TEST_CASE("id_map: insert, find, replace, erase") {
    id_map<std::string> map;
    CHECK(map.find(1) == nullptr);
    CHECK_FALSE(map.erase(1));
    map.insert(7, "seven");
    map.insert(9, "nine");
    CHECK(map.size() == 2);
    REQUIRE(map.find(7) != nullptr);
    CHECK(*map.find(7) == "seven");
    map.insert(7, "SEVEN");  // replaces
    CHECK(map.size() == 2);
    CHECK(*map.find(7) == "SEVEN");
    *map.find(9) += "!";
    CHECK(*map.find(9) == "nine!");
    CHECK(map.erase(7));
    CHECK_FALSE(map.erase(7));
    CHECK(map.find(7) == nullptr);
    CHECK(map.size() == 1);
    CHECK(*map.find(9) == "nine!");
}

TEST_CASE("id_map: random inserts and erases agree with std::unordered_map") {
    for (const std::uint64_t max_id : {20u, 200u, 5000u}) {
        CAPTURE(max_id);
        std::mt19937_64 random(max_id);
        id_map<std::string> map;
        std::unordered_map<std::uint64_t, std::string> reference;
        for (int step = 0; step < 20000; ++step) {
            const std::uint64_t id = 1 + random() % max_id;
            if (random() % 3 == 0) {
                CHECK(map.erase(id) == (reference.erase(id) == 1));
            } else {
                const std::string value = std::to_string(step);
                map.insert(id, value);
                reference[id] = value;
            }
            if (step % 997 == 0) check_same(map, reference, max_id);
        }
        check_same(map, reference, max_id);
    }
}

TEST_CASE("id_map: connections a stride apart come and go; the table does not grow with them") {
    // Thread 2 of 4 gives out 3, 7, 11, …: keep ~1,000 open while 100,000 open and close.
    id_map<std::string> map;
    std::unordered_map<std::uint64_t, std::string> reference;
    std::mt19937_64 random(4);
    std::uint64_t next_id = 3;
    std::vector<std::uint64_t> open;
    std::size_t most_open = 0;
    for (int step = 0; step < 100000; ++step) {
        most_open = std::max(most_open, open.size());
        if (open.size() < 1000 || random() % 2 == 0) {
            map.insert(next_id, std::to_string(next_id));
            reference[next_id] = std::to_string(next_id);
            open.push_back(next_id);
            next_id += 4;
        } else {
            const std::size_t k = random() % open.size();
            CHECK(map.erase(open[k]));
            reference.erase(open[k]);
            open[k] = open.back();
            open.pop_back();
        }
    }
    REQUIRE(map.size() == reference.size());
    CHECK(map.capacity() <= 4 * most_open);  // sized by what is open, not by what came and went
    for (const auto& [id, value] : reference) {
        REQUIRE(map.find(id) != nullptr);
        CHECK(*map.find(id) == value);
    }
    CHECK(map.find(next_id) == nullptr);
    CHECK(map.find(next_id - 3) == nullptr);
}
