// CPU time and resident memory of this process (getrusage, /proc/self/status) and of other
// processes watched by PID (/proc/PID/stat utime+stime, /proc/PID/status VmRSS).
//
// Thread safety: reentrant.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace bench {

struct proc_sample {
    bool ok = false;
    std::uint64_t cpu_us = 0;  // user + system
    std::uint64_t rss_kb = 0;
};

inline std::uint64_t read_status_kb(const std::string& path, const char* key) {
    std::ifstream in(path);
    std::string line;
    const std::size_t klen = std::strlen(key);
    while (std::getline(in, line)) {
        if (line.compare(0, klen, key) == 0) return std::strtoull(line.c_str() + klen, nullptr, 10);
    }
    return 0;
}

inline proc_sample sample_pid(int pid) {
    proc_sample s;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string all;
    if (!std::getline(in, all)) return s;
    // Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
    const auto close = all.rfind(')');
    if (close == std::string::npos) return s;
    std::istringstream rest(all.substr(close + 2));
    std::string field;
    std::uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && (rest >> field); ++i) {
        if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
        if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    static const long ticks = sysconf(_SC_CLK_TCK);
    s.cpu_us = (utime + stime) * 1000000ull / static_cast<std::uint64_t>(ticks > 0 ? ticks : 100);
    s.rss_kb = read_status_kb("/proc/" + std::to_string(pid) + "/status", "VmRSS:");
    s.ok = true;
    return s;
}

inline proc_sample sample_self() {
    proc_sample s;
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    s.cpu_us = static_cast<std::uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
               static_cast<std::uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    s.rss_kb = read_status_kb("/proc/self/status", "VmRSS:");
    s.ok = true;
    return s;
}

}  // namespace bench
