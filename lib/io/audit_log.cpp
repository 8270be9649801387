#include "io/audit_log.hpp"

#include <stdexcept>

#include "io/json_out.hpp"

namespace mqttws {

void audit_log::reopen() {
    if (path_.empty()) return;
    file_.close();
    file_.clear();
    file_.open(path_, std::ios::app);
    if (!file_) throw std::runtime_error("cannot open --audit-log '" + path_ + "'");
}

void audit_log::write(const audit_record& record, std::int64_t wall_ms) {
    if (!file_.is_open()) return;
    file_ << line(record, wall_ms) << std::flush;
}

std::string audit_log::line(const audit_record& record, std::int64_t wall_ms) {
    json_out out;
    out.field("ts", wall_ms);
    for (const auto& [key, value] :
         {std::pair<const char*, const std::string*>{"event", &record.event},
          {"clientId", &record.client_id},
          {"remote", &record.remote_address},
          {"topic", &record.topic},
          {"detail", &record.detail}}) {
        if (!value->empty()) out.field(key, *value);
    }
    return out.line();
}

}  // namespace mqttws
