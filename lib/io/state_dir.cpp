#include "io/state_dir.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "io/log.hpp"

namespace mqttws {

state_dir::state_dir(std::string path) : path_(std::move(path)) {
    if (path_.empty()) return;
    if (::mkdir(path_.c_str(), 0700) != 0 && errno != EEXIST) {
        throw std::runtime_error("cannot create --state-dir '" + path_ +
                                 "': " + std::strerror(errno));
    }
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw std::runtime_error("--state-dir '" + path_ + "' is not a directory");
}

std::string state_dir::file_path(std::string_view file) const {
    return path_ + "/" + std::string(file);
}

std::vector<std::string> state_dir::read(std::string_view file) const {
    std::vector<std::string> lines;
    if (!enabled()) return lines;
    std::ifstream in(file_path(file));
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) lines.push_back(std::move(line));
    }
    return lines;
}

void state_dir::write(const state_record& record) {
    if (!enabled()) return;
    const std::string path = file_path(record.file);
    if (record.replace) {
        const std::string temporary = path + ".new";
        {
            std::ofstream out(temporary, std::ios::trunc);
            out << record.text;
            if (!out.flush()) {
                logging::write(log_level::error, "cannot write the state directory",
                               {{"file", temporary}});
                return;
            }
        }
        if (std::rename(temporary.c_str(), path.c_str()) != 0) {
            logging::write(log_level::error, "cannot write the state directory",
                           {{"file", path}, {"error", std::strerror(errno)}});
        }
        return;
    }
    std::ofstream out(path, std::ios::app);
    out << record.text << '\n';
    if (!out.flush()) {
        logging::write(log_level::error, "cannot write the state directory", {{"file", path}});
    }
}

}  // namespace mqttws
