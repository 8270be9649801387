// The static web root (--web-root): the dashboard and the client SDK, served on the WebSocket's
// port so that one URL works behind one reverse proxy.
//
// A GET is answered from a file inside the root, never outside it: the path is checked by
// core/static_path (no `..`, no encoded separators, no hidden files), and the file it resolves
// to, symbolic links followed, must still lie inside the root. Answers carry the Content-Type
// of the file's extension, an ETag and Last-Modified (a matching If-None-Match gets 304), and
// are gzip-compressed when the client accepts it and the file is text of 1 KiB or more (the
// compressed bytes are kept, per file version, so a file is compressed once). A directory asked
// for without its trailing slash is redirected to it.
//
// Thread safety: the io thread only.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "io/ws_server.hpp"

namespace mqttws {

class static_files {
  public:
    // Throws std::runtime_error when `root` is not a readable directory.
    explicit static_files(const std::string& root);

    http_response serve(const http_request& request);

  private:
    struct compressed {
        std::string etag;
        std::string bytes;
    };

    std::string root_;                                        // canonical, ending with '/'
    std::unordered_map<std::string, compressed> gzip_cache_;  // by canonical file path
    std::size_t gzip_cache_bytes_ = 0;
};

}  // namespace mqttws
