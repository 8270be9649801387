#include "io/static_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <stdexcept>

#include "core/static_path.hpp"

namespace mqttws {
namespace {

constexpr std::size_t max_file_bytes = 32u << 20;
constexpr std::size_t min_gzip_bytes = 1024;
constexpr std::size_t max_gzip_cache_bytes = 32u << 20;

std::string canonical(const std::string& path) {
    char buf[PATH_MAX];
    if (::realpath(path.c_str(), buf) == nullptr) return {};
    return buf;
}

http_response plain(int status, std::string body) {
    http_response r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(body) + "\n";
    return r;
}

std::string http_date(std::time_t t) {
    char buf[64];
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

// "gzip" among the codings of an Accept-Encoding header (and not refused with q=0).
bool accepts_gzip(const std::string& accept_encoding) {
    std::size_t at = 0;
    while (at < accept_encoding.size()) {
        std::size_t end = accept_encoding.find(',', at);
        if (end == std::string::npos) end = accept_encoding.size();
        std::string item = accept_encoding.substr(at, end - at);
        at = end + 1;
        const std::size_t first = item.find_first_not_of(' ');
        if (first == std::string::npos) continue;
        item = item.substr(first);
        if (item.compare(0, 4, "gzip") != 0) continue;
        const std::size_t q = item.find("q=");
        return q == std::string::npos || std::atof(item.c_str() + q + 2) > 0;
    }
    return false;
}

std::string gzip(const std::string& data) {
    z_stream zs{};
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
    std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? out : std::string();
}

}  // namespace

static_files::static_files(const std::string& root) {
    root_ = canonical(root);
    struct stat st {};
    if (root_.empty() || ::stat(root_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw std::runtime_error("--web-root '" + root + "' is not a readable directory");
    if (root_.back() != '/') root_ += '/';
}

http_response static_files::serve(const http_request& request) {
    const auto resolved = resolve_static_path(request.target);
    if (const auto* refusal = std::get_if<static_refusal>(&resolved))
        return plain(refusal->status, refusal->status == 404 ? "not found" : refusal->reason);
    const auto& target = std::get<static_target>(resolved);

    // Inside the root once symbolic links are followed, or not served at all.
    const std::string file = canonical(root_ + target.relative);
    if (file.empty() || file.compare(0, root_.size(), root_) != 0) return plain(404, "not found");
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) return plain(404, "not found");
    if (S_ISDIR(st.st_mode) && !target.index) {
        http_response r = plain(301, "moved");
        r.headers.emplace_back("Location", target.directory);
        return r;
    }
    if (!S_ISREG(st.st_mode)) return plain(404, "not found");
    if (static_cast<std::uint64_t>(st.st_size) > max_file_bytes) return plain(403, "too large");

    char etag_buf[64];
    std::snprintf(etag_buf, sizeof etag_buf, "\"%llx-%llx\"",
                  static_cast<unsigned long long>(st.st_size),
                  static_cast<unsigned long long>(st.st_mtim.tv_sec) * 1000000000ULL +
                      static_cast<unsigned long long>(st.st_mtim.tv_nsec));
    const std::string etag = etag_buf;

    http_response r;
    r.content_type = std::string(mime_type(file));
    r.cache_control = "no-cache";  // revalidate with the ETag
    r.headers.emplace_back("ETag", etag);
    r.headers.emplace_back("Last-Modified", http_date(st.st_mtim.tv_sec));
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    const bool gzip_it =
        compressible(r.content_type) && static_cast<std::size_t>(st.st_size) >= min_gzip_bytes;
    if (gzip_it) r.headers.emplace_back("Vary", "Accept-Encoding");
    if (!request.if_none_match.empty() && request.if_none_match == etag) {
        r.status = 304;
        return r;
    }

    if (gzip_it && accepts_gzip(request.accept_encoding)) {
        const auto cached = gzip_cache_.find(file);
        if (cached != gzip_cache_.end() && cached->second.etag == etag) {
            r.headers.emplace_back("Content-Encoding", "gzip");
            r.body = cached->second.bytes;
            return r;
        }
    }
    std::string content;
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return plain(404, "not found");
    content.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < content.size()) {
        const ssize_t n = ::read(fd, content.data() + got, content.size() - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    content.resize(got);

    if (gzip_it && accepts_gzip(request.accept_encoding)) {
        std::string packed = gzip(content);
        if (!packed.empty() && packed.size() < content.size()) {
            if (gzip_cache_bytes_ + packed.size() > max_gzip_cache_bytes) {
                gzip_cache_.clear();
                gzip_cache_bytes_ = 0;
            }
            auto& slot = gzip_cache_[file];
            gzip_cache_bytes_ -= slot.bytes.size();
            slot = compressed{etag, packed};
            gzip_cache_bytes_ += packed.size();
            r.headers.emplace_back("Content-Encoding", "gzip");
            r.body = std::move(packed);
            return r;
        }
    }
    r.body = std::move(content);
    return r;
}

}  // namespace mqttws
