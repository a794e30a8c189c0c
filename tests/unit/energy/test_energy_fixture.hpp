// Test helper: a private copy of one fake sysfs tree (tests/fixtures/sysfs/<name>) whose counters a test
// may change. The committed fixtures are never modified.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "epmoe/base/config.hpp"

namespace epmoe::test {

// An EnergyConfig reading the tree at root with the default estimate coefficients; sample_hz 0 = no
// sampler thread.
inline EnergyConfig fixture_energy_config(const std::string& root, const std::string& source, double sample_hz) {
    EnergyConfig c;
    c.source = source;
    c.sysfs_root = root;
    c.sample_hz = sample_hz;
    c.estimate = {30.0, 150.0, 3.0};
    return c;
}

class SysfsCopy {
public:
    explicit SysfsCopy(const std::string& name) {
        std::string tmpl = (std::filesystem::temp_directory_path() / "epmoe-sysfs-XXXXXX").string();
        if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        ::chmod(tmpl.c_str(), 0755);  // so a test may read it after dropping privileges
        root_ = tmpl + "/" + name;
        std::filesystem::copy(std::string(EPMOE_FIXTURES) + "/sysfs/" + name, root_,
                              std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
        top_ = tmpl;
    }
    ~SysfsCopy() {
        std::error_code ec;
        std::filesystem::remove_all(top_, ec);
    }
    SysfsCopy(const SysfsCopy&) = delete;
    SysfsCopy& operator=(const SysfsCopy&) = delete;

    const std::string& root() const { return root_; }
    std::string path(const std::string& rel) const { return root_ + "/" + rel; }

    // Replaces an attribute atomically (write a sibling, then rename), as a counter changes under a reader.
    void write(const std::string& rel, const std::string& text) const {
        std::string target = path(rel), tmp = target + ".new";
        {
            std::ofstream out(tmp);
            out << text << "\n";
            if (!out) throw std::runtime_error("cannot write " + tmp);
        }
        if (std::rename(tmp.c_str(), target.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
    }
    void write(const std::string& rel, int64_t value) const { write(rel, std::to_string(value)); }

    int64_t value(const std::string& rel) const {
        std::ifstream in(path(rel));
        int64_t v = 0;
        if (!(in >> v)) throw std::runtime_error("cannot read " + path(rel));
        return v;
    }

    // Adds delta uJ to a RAPL zone's energy_uj, wrapping past max_energy_range_uj as the hardware does;
    // returns delta.
    int64_t advance_zone(const std::string& zone, int64_t delta) const {
        std::string base = "class/powercap/" + zone + "/";
        int64_t max = value(base + "max_energy_range_uj");
        int64_t now = value(base + "energy_uj") + delta;
        write(base + "energy_uj", now > max ? now - max : now);
        return delta;
    }

    // An EnergyConfig reading this tree; sample_hz 0 = no sampler thread.
    EnergyConfig config(const std::string& source, double sample_hz = 0) const {
        return fixture_energy_config(root_, source, sample_hz);
    }

private:
    std::string top_;
    std::string root_;
};

}  // namespace epmoe::test
