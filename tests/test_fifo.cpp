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

TEST_CASE("fifo: pop_push takes the front and appends, full or not") {
    fifo<int> q;
    for (int i = 0; i < 3; ++i)
        q.push_back(i);  // 3 of 4 slots
    CHECK(q.pop_push(3) == 0);
    CHECK(contents(q) == std::vector<int>{1, 2, 3});
    q.push_back(4);  // every slot in use: the front's slot becomes the back's
    for (int next = 5; next < 40; ++next) {
        CHECK(q.pop_push(next) == next - 4);
        CHECK(contents(q) == std::vector<int>{next - 3, next - 2, next - 1, next});
    }
    q.push_back(40);  // grows, in order, from a front in the middle of the slots
    CHECK(contents(q) == std::vector<int>{36, 37, 38, 39, 40});
}

TEST_CASE("fifo: with an expected length the ring stops growing there, and wraps at it") {
    fifo<std::shared_ptr<int>> q(5);
    for (int i = 0; i < 5; ++i)
        q.push_back(std::make_shared<int>(i));
    CHECK(q.capacity() == 5);  // 4 slots, then 5 (not 8)
    auto newest = std::make_shared<int>(5);
    for (int i = 5; i < 23; ++i) {
        newest = std::make_shared<int>(i);
        const auto oldest = q.pop_push(newest);
        CHECK(*oldest == i - 5);
        CHECK(oldest.use_count() == 1);  // the ring holds no copy of what it handed back
        CHECK(*q.front() == i - 4);
    }
    CHECK(q.size() == 5);
    CHECK(newest.use_count() == 2);
    std::vector<int> seen;
    for (const auto& p : q)
        seen.push_back(*p);
    CHECK(seen == std::vector<int>{18, 19, 20, 21, 22});
    q.push_back(std::make_shared<int>(23));  // past the expectation it still grows
    CHECK(q.size() == 6);
    CHECK(q.capacity() == 10);
    CHECK(*q.front() == 18);
}

TEST_CASE("fifo: address_of names the front's slot and the slot the next push writes") {
    fifo<int> q(4);
    for (int i = 0; i < 3; ++i)
        q.push_back(i);
    CHECK(q.address_of(0) == &q.front());
    CHECK(q.address_of(1) == &q[1]);
    const int* next = q.address_of(q.size());
    q.push_back(3);  // not full: the slot after the back
    CHECK(&q[3] == next);
    for (int i = 4; i < 11; ++i) {  // full: the front's slot becomes the back's, across the end
        next = q.address_of(q.size());
        CHECK(next == q.address_of(0));
        q.pop_push(i);
        CHECK(&q[q.size() - 1] == next);
        CHECK(q[q.size() - 1] == i);
    }
    q.pop_front();  // one free slot, after the back (wrapped)
    next = q.address_of(q.size());
    q.push_back(11);
    CHECK(&q[q.size() - 1] == next);
    CHECK(q.capacity() == 4);
}
