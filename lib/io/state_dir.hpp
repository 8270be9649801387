// The state directory (--state-dir): what the bridge keeps across restarts — the outcomes of
// commands sent with an idempotencyKey, and the devices it reported online — as files of text
// lines the engine writes (state_record) and reads back at start (engine::restore_state).
// Without a directory nothing is written.
//
// Thread safety: the app's thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/actions.hpp"

namespace mqttws {

class state_dir {
  public:
    // Creates the directory if it does not exist; throws std::runtime_error when it cannot.
    explicit state_dir(std::string path);

    bool enabled() const { return !path_.empty(); }
    // The lines of `file` (empty when it does not exist yet).
    std::vector<std::string> read(std::string_view file) const;
    // Appends a line, or replaces the file's content (written to a temporary file and renamed,
    // so that a crash leaves the old content or the new, not half of it).
    void write(const state_record& record);

  private:
    std::string file_path(std::string_view file) const;

    std::string path_;
};

}  // namespace mqttws
