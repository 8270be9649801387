// Which file a plain HTTP GET asks for from the static web root (--web-root), decided without
// touching the file system. The request target is untrusted input from the network: its path is
// percent-decoded strictly and checked segment by segment, so that what comes out can only name
// something inside the root:
// - `..` segments, encoded or not, are refused, and so are encoded `/` and `\` (a path that
//   decodes into different segments than it shows), NUL and other control characters;
// - `.` and empty segments are dropped; a segment starting with `.` (`.git`, `.env`) is not
//   served;
// - a path ending in `/` names that directory's `index.html`.
// Symbolic links pointing out of the root are the file system's business: static_files checks
// the resolved path (lib/io/static_files.hpp).
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <variant>

namespace mqttws {

struct static_target {
    std::string relative;   // e.g. "dashboard/index.html"; never empty, never starts with '/'
    std::string directory;  // the decoded path as asked, for a redirect ("/dashboard" → ".../")
    bool index = false;     // the path named a directory; `relative` is its index.html
};

struct static_refusal {
    int status = 400;  // 400 (malformed) or 404 (not served)
    std::string reason;
};

std::variant<static_target, static_refusal> resolve_static_path(std::string_view request_target);

// The Content-Type for a file name, by its extension (application/octet-stream if unknown).
std::string_view mime_type(std::string_view file_name);
// Worth compressing: text, JSON, JavaScript, SVG.
bool compressible(std::string_view mime);

}  // namespace mqttws
