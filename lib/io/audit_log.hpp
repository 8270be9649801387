// The audit trail (--audit-log): one JSON line per security-relevant event the engine reports
// (authentications, refusals, publishes to audited topics), appended to a file that logrotate
// may move away (reopen() on SIGHUP).
//
// Thread safety: the app's thread only.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include "core/actions.hpp"

namespace mqttws {

class audit_log {
  public:
    // An empty path: no audit trail, write() does nothing.
    explicit audit_log(std::string path) : path_(std::move(path)) {}

    // Opens (again) for appending. Throws std::runtime_error when the file cannot be opened.
    void reopen();
    void write(const audit_record& record, std::int64_t wall_ms);

    // `{"ts":<wall_ms>,"event":…,"clientId":…,"remote":…,"topic":…,"detail":…}\n`, leaving out
    // empty fields.
    static std::string line(const audit_record& record, std::int64_t wall_ms);

  private:
    std::string path_;
    std::ofstream file_;
};

}  // namespace mqttws
