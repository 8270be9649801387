// Giving freed memory back to the system, and what the process holds, for /metrics.
//
// glibc's malloc keeps what the bridge frees in its arenas for reuse, and gives little of it
// back by itself: after a peak (15,000 connections that came and went, a slow consumer's queue of
// hundreds of megabytes) the process kept ~130 MB it no longer used. Every `check_every` the
// trimmer looks at the heap's free bytes, and when there are more than `threshold` of them it
// calls malloc_trim(0), which returns free pages from every arena (the middle of the heap
// included, with madvise).
//
// Thread safety: the io thread only (malloc_trim itself is thread-safe).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace mqttws {

struct memory_stats {
    std::size_t resident_bytes = 0;    // RSS of the process
    std::size_t heap_free_bytes = 0;   // free in malloc's arenas at the last check
    std::uint64_t trims = 0;           // malloc_trim calls
    std::uint64_t returned_bytes = 0;  // RSS given back by them (measured around each call)
};

class memory_trimmer {
  public:
    explicit memory_trimmer(std::chrono::milliseconds check_every = std::chrono::seconds(5),
                            std::size_t threshold = 8u << 20)
        : check_every_(check_every), threshold_(threshold) {}

    // Called often (every tick); does its work at most every `check_every`.
    void maybe_trim();
    memory_stats stats() const;

  private:
    std::chrono::milliseconds check_every_;
    std::size_t threshold_;
    std::chrono::steady_clock::time_point last_check_{};
    memory_stats stats_;
};

// The process's resident set size in bytes (0 if unknown).
std::size_t resident_bytes();

}  // namespace mqttws
