// fifo: the ring behind every session's history and backlog.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "core/fifo.hpp"

using mqttws::fifo;

namespace {
std::vector<int> contents(const fifo<int>& q) {
    return std::vector<int>(q.begin(), q.end());
}
}  // namespace

TEST_CASE("fifo: first in, first out, also across the ring's end") {
    fifo<int> q;
    CHECK(q.empty());
    CHECK(q.begin() == q.end());
    int next_in = 0, next_out = 0;
    // One in, one out, at a steady length of 3 (the history's pattern): the front moves round
    // the 4 slots many times.
    for (int i = 0; i < 3; ++i)
        q.push_back(next_in++);
    for (int i = 0; i < 50; ++i) {
        q.push_back(next_in++);
        REQUIRE(q.front() == next_out);
        q.pop_front();
        ++next_out;
        CHECK(q.size() == 3);
        CHECK(contents(q) == std::vector<int>{next_out, next_out + 1, next_out + 2});
    }
}

TEST_CASE("fifo: growing while the items wrap round keeps their order") {
    fifo<int> q;
    for (int i = 0; i < 4; ++i)
        q.push_back(i);
    q.pop_front();
    q.pop_front();
    q.push_back(4);
    q.push_back(5);  // full, and the front is in the middle of the slots
    for (int i = 6; i < 20; ++i)
        q.push_back(i);  // grows twice
    std::vector<int> expected;
    for (int i = 2; i < 20; ++i)
        expected.push_back(i);
    CHECK(contents(q) == expected);
    while (!q.empty())
        q.pop_front();
    q.push_back(7);
    CHECK(contents(q) == std::vector<int>{7});
}

TEST_CASE("fifo: popping releases the item at once") {
    fifo<std::shared_ptr<int>> q;
    auto first = std::make_shared<int>(1);
    q.push_back(first);
    q.push_back(std::make_shared<int>(2));
    CHECK(first.use_count() == 2);
    q.pop_front();
    CHECK(first.use_count() == 1);  // not held by a consumed slot until it is reused
    CHECK(*q.front() == 2);
}

TEST_CASE("fifo: items are changed in place through the iterator") {
    fifo<int> q;
    for (int i = 0; i < 5; ++i)
        q.push_back(i);
    for (int& v : q)
        v *= 10;
    CHECK(contents(q) == std::vector<int>{0, 10, 20, 30, 40});
}
