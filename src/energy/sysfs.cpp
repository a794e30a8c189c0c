#include "sysfs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

#include "epmoe/base/error.hpp"

namespace fs = std::filesystem;

namespace epmoe::energy_detail {
namespace {

// A directory entry whose name matched a pattern, with its capture groups ("" if a group did not match).
struct Entry {
    std::string name;
    std::vector<std::string> groups;  // [0] is the whole name
};

// Entries of dir whose file name matches re; empty if dir is missing.
std::vector<Entry> matching_entries(const fs::path& dir, const std::regex& re) {
    std::vector<Entry> out;
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        Entry e{it->path().filename().string(), {}};
        std::smatch m;
        if (!std::regex_match(e.name, m, re)) continue;
        for (const auto& g : m) e.groups.push_back(g.matched ? g.str() : "");
        out.push_back(std::move(e));
    }
    return out;
}

// The directory that holds an hwmon device's attributes: hwmonN itself, or hwmonN/device on old kernels
// whose drivers registered the attributes on the parent device.
fs::path attribute_dir(const fs::path& hwmon) {
    std::error_code ec;
    if (fs::exists(hwmon / "name", ec)) return hwmon;
    if (fs::exists(hwmon / "device" / "name", ec)) return hwmon / "device";
    return hwmon;
}

int kind_order(const std::string& kind) { return kind == "energy" ? 0 : kind == "power" ? 1 : 2; }

std::vector<HwmonInput> list_inputs(const fs::path& dir, const std::string& device_name) {
    static const std::regex re(R"((energy|power|temp)([0-9]+)_input)");
    std::vector<std::pair<int, HwmonInput>> found;
    for (const auto& e : matching_entries(dir, re)) {
        HwmonInput in;
        in.input = e.name;
        in.kind = e.groups[1];
        TextRead label = read_text((dir / (in.kind + e.groups[2] + "_label")).string());
        in.label = label.ok ? label.text : "";
        IntRead v = read_int((dir / e.name).string());
        in.readable = v.ok;
        in.error = v.error;
        found.emplace_back(std::stoi(e.groups[2]), in);
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
        int ka = kind_order(a.second.kind), kb = kind_order(b.second.kind);
        return ka != kb ? ka < kb : a.first < b.first;
    });
    std::vector<HwmonInput> inputs;
    for (auto& f : found) inputs.push_back(f.second);
    // Energy counters are summed; amd_energy's per-core Ecore* channels are already inside Esocket*.
    bool has_energy = false;
    for (auto& in : inputs) {
        if (in.kind != "energy") continue;
        in.counted = !(device_name == "amd_energy" && in.label.rfind("Ecore", 0) == 0);
        has_energy = has_energy || in.counted;
    }
    // Power is integrated only where the device has no energy counter.
    for (auto& in : inputs)
        if (in.kind == "power") in.counted = !has_energy;
    return inputs;
}

}  // namespace

TextRead read_text(const std::string& path) {
    TextRead r;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r.err = errno;
        r.error = cat(path, ": ", errno_text(r.err));
        return r;
    }
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    int err = errno;
    ::close(fd);
    if (n < 0) {
        r.err = err;
        r.error = cat(path, ": ", errno_text(err));
        return r;
    }
    r.text.assign(buf, static_cast<size_t>(n));
    while (!r.text.empty() && std::isspace(static_cast<unsigned char>(r.text.back()))) r.text.pop_back();
    r.ok = true;
    return r;
}

IntRead read_int(const std::string& path) {
    IntRead r;
    TextRead t = read_text(path);
    if (!t.ok) {
        r.error = t.error;
        r.err = t.err;
        return r;
    }
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(t.text.c_str(), &end, 10);
    if (t.text.empty() || end == nullptr || *end != '\0' || errno == ERANGE) {
        r.error = cat(path, ": '", t.text, "' is not a decimal integer");
        return r;
    }
    r.value = v;
    r.ok = true;
    return r;
}

std::vector<RaplZone> list_rapl_zones(const std::string& root, std::string* why) {
    static const std::regex re(R"(intel-rapl:([0-9]+)(?::([0-9]+))?)");
    fs::path dir = fs::path(root) / "class" / "powercap";
    std::vector<std::pair<std::pair<int, int>, RaplZone>> found;
    for (const auto& e : matching_entries(dir, re)) {
        RaplZone z;
        z.zone = e.name;
        z.path = (dir / e.name).string();
        bool top = e.groups[2].empty();
        TextRead name = read_text(z.path + "/name");
        z.name = name.ok ? name.text : "";
        z.counted = (top && z.name.rfind("package", 0) == 0) || z.name == "dram";
        IntRead energy = read_int(z.path + "/energy_uj");
        IntRead range = read_int(z.path + "/max_energy_range_uj");
        z.readable = energy.ok && range.ok && range.value > 0;
        if (!energy.ok) {
            z.error = energy.error;
            if (energy.err == EACCES)
                z.error +=
                    ": energy_uj is readable only by root since Linux 5.10 (CVE-2020-8694, PLATYPUS); run "
                    "as root, make it readable (chmod a+r .../energy_uj), or set energy.source=estimated";
        } else if (!range.ok) {
            z.error = range.error;
        } else if (range.value <= 0) {
            z.error = cat(z.path, "/max_energy_range_uj: ", range.value, " is not a positive range");
        }
        found.emplace_back(std::make_pair(std::stoi(e.groups[1]), top ? -1 : std::stoi(e.groups[2])), z);
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<RaplZone> zones;
    for (auto& f : found) zones.push_back(f.second);
    if (zones.empty() && why != nullptr) {
        std::error_code ec;
        *why = fs::is_directory(dir, ec) ? "no intel-rapl:* zones" : cat("no directory ", dir.string());
    }
    return zones;
}

std::vector<HwmonDevice> list_hwmon_devices(const std::string& root, std::string* why) {
    static const std::regex re(R"(hwmon([0-9]+))");
    fs::path dir = fs::path(root) / "class" / "hwmon";
    std::vector<std::pair<int, HwmonDevice>> found;
    for (const auto& e : matching_entries(dir, re)) {
        HwmonDevice d;
        d.device = e.name;
        fs::path attrs = attribute_dir(dir / e.name);
        d.path = attrs.string();
        TextRead name = read_text((attrs / "name").string());
        d.name = name.ok ? name.text : "";
        d.inputs = list_inputs(attrs, d.name);
        found.emplace_back(std::stoi(e.groups[1]), d);
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<HwmonDevice> devices;
    for (auto& f : found) devices.push_back(f.second);
    if (devices.empty() && why != nullptr) {
        std::error_code ec;
        *why = fs::is_directory(dir, ec) ? "no hwmon* devices" : cat("no directory ", dir.string());
    }
    return devices;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

PeriodicSampler::PeriodicSampler(double hz, std::function<void()> fn) {
    if (hz <= 0) return;
    auto period = std::chrono::duration<double>(1.0 / hz);
    thread_ = std::thread([this, period, fn = std::move(fn)] {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
            lock.unlock();
            fn();
            lock.lock();
        }
    });
}

std::optional<double> PowerMeter::update(double joules, double now) {
    std::optional<double> watts;
    if (now > last_time_) watts = (joules - last_joules_) / (now - last_time_);
    last_joules_ = joules;
    last_time_ = now;
    return watts;
}

void poll_keeping_error(std::string* error, const std::function<void()>& poll) {
    if (!error->empty()) return;
    try {
        poll();
    } catch (const std::exception& e) {
        *error = e.what();
    }
}

PeriodicSampler::~PeriodicSampler() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

TempReader::TempReader(const std::string& root) {
    for (const auto& d : list_hwmon_devices(root, nullptr))
        for (const auto& in : d.inputs)
            if (in.kind == "temp" && in.readable) paths_.push_back(d.path + "/" + in.input);
}

std::optional<double> TempReader::max_c() const {
    std::optional<double> hottest;
    for (const auto& p : paths_) {
        IntRead v = read_int(p);
        if (v.ok) hottest = std::max(hottest.value_or(-1e300), static_cast<double>(v.value) / 1000.0);
    }
    return hottest;
}

}  // namespace epmoe::energy_detail
