#include "io/memory.hpp"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>

namespace mqttws {

std::size_t resident_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return 0;
    unsigned long size = 0;
    unsigned long resident = 0;
    const int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    if (n != 2) return 0;
    return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

void memory_trimmer::maybe_trim() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check_ < check_every_) return;
    last_check_ = now;
    const struct mallinfo2 info = mallinfo2();
    stats_.heap_free_bytes = info.fordblks;
    if (info.fordblks < threshold_) return;
    const std::size_t before = resident_bytes();
    malloc_trim(0);
    const std::size_t after = resident_bytes();
    ++stats_.trims;
    if (after < before) stats_.returned_bytes += before - after;
    stats_.heap_free_bytes = mallinfo2().fordblks;
}

memory_stats memory_trimmer::stats() const {
    memory_stats s = stats_;
    s.resident_bytes = resident_bytes();
    return s;
}

}  // namespace mqttws
