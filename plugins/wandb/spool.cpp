// The spool (worker): while W&B is away (or refuses the key), rows, media files, the run's meta
// and summary go to a directory per run through the host's storage (or a private local
// directory); they are sent, oldest first, when W&B answers again, and what could not be sent is
// left there for the next start (sync_leftover_spools) or `ember wandb sync`. The layout is
// wandb_spool.hpp's.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <set>

#include "logger.hpp"
#include "wandb_api_runs.hpp"
#include "wandb_run_readers.hpp"
#include "wandb_safety.hpp"
#include "wandb_spool.hpp"

namespace ember::wandb_plugin {

namespace {

// The spool through the host's URL space (any scheme the host has: file://, s3://, memory://).
class HostStore final : public wb::Store {
 public:
  explicit HostStore(const ember_host_t& h) : h_(h) {}
  std::optional<std::string> read(const std::string& url) override {
    ember_stat_t st{};
    st.struct_size = sizeof st;
    if (h_.stat(h_.ctx, str(url), &st) != EMBER_OK) return std::nullopt;
    ember_file_t* f = nullptr;
    if (h_.open_read(h_.ctx, str(url), 0, UINT64_MAX, &f) != EMBER_OK) throw_host("cannot read", url);
    std::string out;
    char buf[1 << 16];
    for (;;) {
      size_t got = 0;
      if (h_.read(h_.ctx, f, buf, sizeof buf, &got) != EMBER_OK) {
        std::string why(view(h_.last_error(h_.ctx)));
        h_.close(h_.ctx, f);
        throw std::runtime_error("wandb: cannot read " + url + ": " + why);
      }
      if (got == 0) break;
      out.append(buf, got);
    }
    h_.close(h_.ctx, f);
    return out;
  }
  void write(const std::string& url, std::string_view bytes) override {
    ember_file_t* f = nullptr;
    if (h_.open_write(h_.ctx, str(url), &f) != EMBER_OK) throw_host("cannot write", url);
    ember_status_t rc = h_.write(h_.ctx, f, bytes.data(), bytes.size());
    if (rc == EMBER_OK) rc = h_.commit(h_.ctx, f);
    std::string why = rc == EMBER_OK ? "" : std::string(view(h_.last_error(h_.ctx)));
    h_.close(h_.ctx, f);
    if (rc != EMBER_OK) throw std::runtime_error("wandb: cannot write " + url + ": " + why);
  }
  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> names;
    h_.list(
        h_.ctx, str(dir),
        [](void* u, const ember_stat_t* e) -> int32_t {
          std::string url(view(e->url));
          while (!url.empty() && url.back() == '/') url.pop_back();
          auto s = url.rfind('/');
          static_cast<std::vector<std::string>*>(u)->push_back(s == std::string::npos ? url : url.substr(s + 1));
          return 0;
        },
        &names);
    std::sort(names.begin(), names.end());
    return names;
  }
  void remove(const std::string& url) override { h_.remove(h_.ctx, str(url)); }

 private:
  [[noreturn]] void throw_host(const char* what, const std::string& url) {
    throw std::runtime_error(std::string("wandb: ") + what + " " + url + ": " + std::string(view(h_.last_error(h_.ctx))));
  }
  const ember_host_t& h_;
};

// Spool directories of wandb loggers alive in this process: a directory named by our own pid is
// left over only when its logger has finished.
std::mutex& live_mu() {
  static std::mutex m;
  return m;
}
std::set<std::string>& live_spools() {
  static std::set<std::string> s;
  return s;
}

}  // namespace

std::unique_ptr<wb::Store> make_host_store(const ember_host_t& host) { return std::make_unique<HostStore>(host); }

LiveSpool::LiveSpool(std::string dir) : dir_(std::move(dir)) {
  std::lock_guard<std::mutex> lk(live_mu());
  live_spools().insert(dir_);
}

LiveSpool::~LiveSpool() {
  std::lock_guard<std::mutex> lk(live_mu());
  live_spools().erase(dir_);
}

bool LiveSpool::is_live(const std::string& dir) {
  std::lock_guard<std::mutex> lk(live_mu());
  return live_spools().count(dir) > 0;
}

// The oldest spooled segments first, so the server receives lines in order.
void WandbLogger::send_spooled(Stream& s) {
  while (!s.spooled.empty()) {
    auto [first, url] = s.spooled.front();
    auto text = spool_->read(url);
    json::array content;
    if (text)
      for (auto& kv : wb::split_segment(first, *text))
        content.emplace_back(&s == &history_ && kv.first < shift_until_
                                 ? wb::shift_history_line(kv.second, starting_step_, runtime_offset_)
                                 : kv.second);
    if (!content.empty())
      post(json::object{{"files", json::object{{s.file, json::object{{"offset", wire(s, first)}, {"content", content}}},
                                               {"wandb-summary.json", summary_file(summary_text(false))}}},
                        {"dropped", 0}});
    spool_->remove(url);
    s.spooled_lines -= static_cast<std::int64_t>(content.size());
    s.spooled.erase(s.spooled.begin());
  }
}

// Move the in-memory lines to spool segments (host storage) with the run's meta and summary.
void WandbLogger::spill() {
  last_spill_ = Clock::now();
  try {
    bool any = false;
    for (Stream* s : {&history_, &events_, &output_}) {
      if (s->lines.empty()) continue;
      std::string text;
      text.reserve(s->mem_bytes + s->lines.size());
      for (auto& l : s->lines) text += l, text += '\n';
      std::string url = wb::join_url(opt_.spool_dir, wb::spool_segment_name(s->kind, s->mem_first));
      spool_->write(url, text);
      s->spooled.emplace_back(s->mem_first, url);
      s->spooled_lines += static_cast<std::int64_t>(s->lines.size());
      s->mem_first += static_cast<std::int64_t>(s->lines.size());
      s->lines.clear();
      s->mem_bytes = 0;
      any = true;
    }
    // Media files: "file-<path with / as %2F>", uploaded as run files when W&B answers again.
    while (!media_files_.empty()) {
      auto& [path, bytes] = media_files_.front();
      std::string url = wb::join_url(opt_.spool_dir, wb::spool_file_name(path));
      spool_->write(url, bytes);
      spooled_files_.emplace_back(path, url);
      media_bytes_ -= bytes.size();
      media_files_.pop_front();
      any = true;
    }
    if (any || !meta_written_) write_spool_meta();
    if (any) spool_->write(wb::join_url(opt_.spool_dir, "summary.json"), summary_text(false));
  } catch (const std::exception& e) {
    if (!spill_warned_) say(EMBER_LOG_ERROR, std::string("cannot spool to ") + opt_.spool_dir + ": " + e.what() + "; rows stay in memory");
    spill_warned_ = true;
  }
}

void WandbLogger::write_spool_meta() {
  wb::RunMeta m = upsert_meta();
  json::object meta = m.to_json();
  meta["base_url"] = opt_.base_url;
  meta["config"] = config_wire();
  meta["pid"] = static_cast<std::int64_t>(::getpid());
  meta["hostname"] = opt_.meta.host;
  meta["history_base"] = base_history_;
  meta["events_base"] = base_events_;
  meta["output_base"] = base_output_;
  // Offsets in the segments are local; a run that asked to resume but has not reached W&B yet
  // does not know where it continues: `sync` asks the server. Lines below shift_until were
  // numbered before that answer and need step_shift and runtime_shift added.
  meta["resume"] = opt_.resume;
  meta["base_known"] = opt_.resume.empty() || resume_checked_;
  meta["shift_until"] = shift_until_;
  meta["step_shift"] = starting_step_;
  meta["runtime_shift"] = runtime_offset_;
  spool_->write(wb::join_url(opt_.spool_dir, "meta.json"), json::serialize(meta));
  meta_written_ = true;
}

void WandbLogger::leave_in_spool() {
  if (!spool_) return;
  spill();
  std::int64_t rows = history_.pending();
  std::int64_t events = events_.pending();
  std::int64_t output = output_.pending();
  try {
    write_spool_meta();
    spool_->write(wb::join_url(opt_.spool_dir, "summary.json"), summary_text(true));
    spool_->write(wb::join_url(opt_.spool_dir, "exit.json"), json::serialize(json::object{{"exitcode", exit_code_}}));
  } catch (const std::exception& e) {
    report_ = std::string("could not send the run to W&B and cannot spool it: ") + e.what();
    return;
  }
  std::string why = !net_disabled_.empty() ? net_disabled_ : "W&B at " + opt_.base_url + " did not answer within finalize_timeout_s=" +
                                                                  wb::number_text(opt_.finalize_timeout);
  std::string lost_art;
  if (!my_jobs_.empty()) lost_art = "; " + std::to_string(my_jobs_.size()) + " model artifact upload(s) were not done";
  std::string files = spooled_files_.empty() ? "" : std::to_string(spooled_files_.size()) + " media files, ";
  report_ = "not sent (" + why + "): " + std::to_string(rows) + " history rows, " + std::to_string(events) +
            " system-metric rows, " + std::to_string(output) + " console lines, " + files + "the summary and the exit code" +
            lost_art + ". They are kept in " + opt_.spool_dir + " and sent at the next start of a wandb logger with spool_dir " +
            opt_.spool_root + ", or by `ember wandb sync " +
            opt_.spool_dir + "`";
}

// Runs other processes left in the spool root (a W&B outage, a wrong key): upload them now.
void WandbLogger::sync_leftover_spools() {
  std::vector<std::string> dirs;
  const bool local = !wb::local_path_of(opt_.spool_root).empty();
  // Only a spool root that is ours and private: anything in a shared one may have been planted
  // to be uploaded with this user's key.
  if (local && !wb::is_private_dir(opt_.spool_root)) return;
  try {
    dirs = spool_->list(opt_.spool_root);
  } catch (const std::exception&) {
    return;
  }
  for (const auto& name : dirs) {
    if (name.rfind("run-", 0) != 0) continue;
    std::string dir = wb::join_url(opt_.spool_root, name);
    if (dir == opt_.spool_dir) continue;
    if (local && !wb::is_private_dir(dir)) {
      say(EMBER_LOG_WARN, "skipping spool directory " + dir + ": not a directory of yours with mode 0700; not sent");
      continue;
    }
    try {
      auto meta_text = spool_->read(wb::join_url(dir, "meta.json"));
      if (!meta_text) continue;
      json::object meta = json::parse(*meta_text).as_object();
      std::string base = meta.if_contains("base_url") ? std::string(meta.at("base_url").as_string()) : "";
      if (base != opt_.base_url) continue;
      auto pid = static_cast<pid_t>(meta.at("pid").to_number<std::int64_t>());
      // EPERM: the process exists but is another user's; it is alive, not a leftover.
      bool alive = pid == ::getpid() ? LiveSpool::is_live(dir) : (::kill(pid, 0) == 0 || errno == EPERM);
      if (meta.at("hostname").as_string() == opt_.meta.host && alive) continue;  // still running
      std::vector<std::string> used;
      wb::RunData d = wb::read_spool_dir(*spool_, dir, &used, nullptr);
      const std::size_t rows = d.history.size();
      const std::string id = d.meta.run_id;
      wb::upload_run(*api_, std::move(d));
      for (const auto& f : used) spool_->remove(wb::join_url(dir, f));
      say(EMBER_LOG_INFO, "sent run " + id + " left in the spool " + dir + " (" + std::to_string(rows) +
                              " history rows)");
    } catch (const wb::ApiError& e) {
      if (e.kind() == wb::Failure::auth) throw;
      say(EMBER_LOG_WARN, "could not send the spooled run in " + dir + ": " + e.what() + "; it stays there");
      if (e.kind() == wb::Failure::retryable) throw;
    } catch (const std::exception& e) {
      say(EMBER_LOG_WARN, "skipping spool directory " + dir + ": " + e.what());
    }
  }
}

}  // namespace ember::wandb_plugin
