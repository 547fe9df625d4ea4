// The online sender (worker): the run (UpsertBucket, resume), file_stream posts on W&B's cadence,
// config updates and heartbeats, W&B's retry policy with backoff while the rows wait in memory or
// the spool (spool.cpp), model artifacts (artifacts.cpp), and the end of the run: run files, the
// final summary, the uploaded notice and complete.
#include <algorithm>

#include "logger.hpp"
#include "sysinfo.hpp"
#include "wandb_api_runs.hpp"
#include "wandb_json.hpp"
#include "wandb_safety.hpp"
#include "wandb_spool.hpp"

namespace ember::wandb_plugin {

void WandbLogger::run_online() {
  wb::ApiOptions ao = opt_.api_options(3);  // inner retries (artifact steps, run files); the loop retries the rest
  ao.wait = [this](Clock::time_point t) { return wait_until(t); };
  api_ = std::make_unique<wb::Api>(ao);
  store_ = make_host_store(host());
  // A local spool (the default) is private: 0700 directories checked to be ours, 0600 files.
  // Another scheme (s3://…) is the user's choice; its access control is the bucket's.
  if (wb::local_path_of(opt_.spool_root).empty()) spool_ = make_host_store(host());
  else spool_ = std::make_unique<wb::LocalStore>(true);
  last_post_ = last_stats_ = Clock::now();
  last_cpu_s_ = sample_proc().cpu_s;

  bool finishing = false;
  for (;;) {
    auto next = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                   std::max(0.05, std::min(post_interval(), 1.0))));
    if (backoff_until_ > Clock::now()) next = std::min(next, backoff_until_);
    wait_until(next);
    if (drain(finishing)) config_changed_ = true;
    auto now = Clock::now();
    if (opt_.stats_interval > 0 && now - last_stats_ >= std::chrono::duration<double>(opt_.stats_interval)) sample_stats();
    if (finishing && opt_.stats_interval > 0 && stats_lines_ == 0) sample_stats();
    const bool past_deadline = finishing && now >= deadline_;
    if (past_deadline) break;
    if (!net_disabled_.empty()) {
      if (history_.mem_bytes + events_.mem_bytes + media_bytes_ + output_.mem_bytes > 0 && (finishing || now - last_spill_ > std::chrono::seconds(2))) spill();
      if (finishing) break;
      continue;
    }
    if (now < backoff_until_) {
      if (now - last_spill_ > std::chrono::seconds(2) || history_.mem_bytes + media_bytes_ > opt_.max_queue_bytes) spill();
      continue;
    }
    try {
      if (finishing) api_->set_timeout(remaining_ms());
      if (network_step(finishing)) break;  // everything sent and the run completed
      failures_ = 0;
      if (down_) {
        down_ = false;
        say(EMBER_LOG_INFO, "W&B at " + opt_.base_url + " answers again; sending what was kept");
      }
    } catch (const wb::ApiError& e) {
      on_failure(e);
    } catch (const std::exception& e) {
      on_failure(wb::ApiError(wb::Failure::fatal, 0, e.what()));
    }
  }
  // Whatever could not be sent goes to the spool, and finalize says so.
  if (!completed_) leave_in_spool();
}

std::chrono::milliseconds WandbLogger::remaining_ms() const {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
  auto cap = std::chrono::milliseconds(static_cast<std::int64_t>(opt_.http_timeout * 1000));
  return std::max(std::chrono::milliseconds(50), std::min(left, cap));
}

void WandbLogger::on_failure(const wb::ApiError& e) {
  if (e.kind() == wb::Failure::auth) {
    net_disabled_ = "the API key was refused";
    say(EMBER_LOG_ERROR, "W&B at " + opt_.base_url + " refused the API key (HTTP 401); no more requests this run. "
                         "Metrics are kept in " + opt_.spool_dir + "; send them with `ember wandb sync " + opt_.spool_dir +
                         "` once WANDB_API_KEY is right");
    spill();
    return;
  }
  if (e.kind() == wb::Failure::fatal) {
    if (in_artifact_) {
      in_artifact_ = false;
      say(EMBER_LOG_ERROR, "model artifact not logged: " + std::string(e.what()));
      if (!my_jobs_.empty()) my_jobs_.pop_front();
      return;
    }
    net_disabled_ = e.what();
    say(EMBER_LOG_ERROR, std::string(e.what()) + "; no more requests this run; metrics are kept in " + opt_.spool_dir);
    spill();
    return;
  }
  ++failures_;
  backoff_until_ = Clock::now() + api_->backoff(failures_ - 1);
  if (!down_) {
    down_ = true;
    say(EMBER_LOG_WARN, std::string(e.what()) + "; retrying with backoff, metrics are kept (spooled to " + opt_.spool_dir + ")");
  }
  spill();
}

// One pass of network work; true when the run is complete.
bool WandbLogger::network_step(bool finishing) {
  if (!run_) create_run();
  send_media_files();
  send_spooled(history_);
  send_spooled(events_);
  send_spooled(output_);
  auto now = Clock::now();
  bool due = finishing || now - last_post_ >= std::chrono::duration<double>(post_interval()) ||
             history_.mem_bytes > (4u << 20);
  while (due && (!history_.lines.empty() || !events_.lines.empty() || !output_.lines.empty())) {
    post_lines();
    if (!finishing && history_.mem_bytes < (4u << 20)) break;
  }
  if (config_changed_ && (finishing || now - last_config_ >= std::chrono::seconds(30))) {
    std::string cfg = config_wire();
    wb::upsert_bucket(*api_, upsert_meta(), &cfg, false);
    config_changed_ = false;
    last_config_ = now;
  }
  while (!my_jobs_.empty()) {
    in_artifact_ = true;
    run_artifact_job(my_jobs_.front());
    in_artifact_ = false;
    my_jobs_.pop_front();
  }
  if (!finishing) {
    if (now - last_post_ >= std::chrono::seconds(30)) heartbeat();
    return false;
  }
  // The end: run files, the last data with the final summary, the uploaded notice, complete.
  if (finish_stage_ == 0) {
    std::string cfg = config_wire();
    wb::upsert_bucket(*api_, upsert_meta(), &cfg, false);
    finish_stage_ = 1;
  }
  if (finish_stage_ == 1) {
    final_summary_ = summary_text(true);
    wb::upload_run_file(*api_, *run_, "wandb-summary.json", final_summary_);
    wb::upload_run_file(*api_, *run_, "config.yaml", wb::config_yaml(wb::wrap_config(full_config())));
    uploaded_.push_back("wandb-summary.json");
    uploaded_.push_back("config.yaml");
    if (!console_log_.empty()) {
      wb::upload_run_file(*api_, *run_, "output.log", console_log_);
      uploaded_.push_back("output.log");
    }
    finish_stage_ = 2;
  }
  if (finish_stage_ == 2) {
    post(json::object{{"files", json::object{{"wandb-summary.json", summary_file(final_summary_)}}}, {"dropped", 0}});
    finish_stage_ = 3;
  }
  if (finish_stage_ == 3) {
    json::array up;
    for (auto& u : uploaded_) up.emplace_back(u);
    post(json::object{{"complete", false}, {"failed", false}, {"dropped", 0}, {"uploaded", up}});
    uploaded_.clear();
    finish_stage_ = 4;
  }
  post(json::object{{"complete", true}, {"exitcode", exit_code_}, {"dropped", 0}, {"uploaded", json::array{}}});
  completed_ = true;
  say(EMBER_LOG_INFO, "run " + run_->entity + "/" + run_->project + "/" + run_->run_id + " finished on " + opt_.base_url +
                          " (" + std::to_string(history_.next) + " history rows)");
  return true;
}

wb::RunMeta WandbLogger::upsert_meta() const {
  wb::RunMeta m = opt_.meta;
  if (run_) m.entity = run_->entity, m.project = run_->project;
  return m;
}

void WandbLogger::create_run() {
  json::object v = api_->graphql(
      "query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }", {});
  (void)v;
  if (opt_.sync_spool && !spool_synced_) {
    spool_synced_ = true;
    sync_leftover_spools();
  }
  if (!opt_.resume.empty()) {
    json::value b = wb::resume_status(*api_, opt_.meta);
    if (b.is_null() && opt_.resume == "must")
      throw wb::ApiError(wb::Failure::fatal, 0, "resume='must' but run " + opt_.meta.run_id + " does not exist in project " +
                                                    opt_.meta.project + " on " + opt_.base_url);
    if (!b.is_null() && opt_.resume == "never")
      throw wb::ApiError(wb::Failure::fatal, 0, "resume='never' but run " + opt_.meta.run_id + " already exists on " + opt_.base_url);
    if (!resume_checked_ && b.is_object()) resume_from(b.as_object());
    resume_checked_ = true;
  }
  std::string cfg = config_wire();
  config_changed_ = false;
  last_config_ = Clock::now();
  run_ = wb::upsert_bucket(*api_, opt_.meta, &cfg, true);
  say(EMBER_LOG_INFO, "logging run " + run_->entity + "/" + run_->project + "/" + run_->run_id + " to " + opt_.base_url);
  wb::upload_run_file(*api_, *run_, "wandb-metadata.json", metadata_json());
  uploaded_.push_back("wandb-metadata.json");
}

// A resumed run continues after the lines and the step the server has. Rows rendered before
// W&B answered (it was unreachable at the start) were numbered from 0: they keep their local
// offsets and get _step and _runtime moved on when they are sent (shift_until_).
void WandbLogger::resume_from(const json::object& b) {
  wb::ResumeBase base = wb::resume_base(b);
  base_history_ = base.history_lines;
  base_events_ = base.events_lines;
  base_output_ = base.log_lines;
  starting_step_ = base.next_step;
  runtime_offset_ = base.runtime;
  shift_until_ = history_.next;
  if (shift_until_ > 0) summary_.update("_step", static_cast<double>(starting_step_ + history_.next - 1));
  if (meta_written_) write_spool_meta();
  say(EMBER_LOG_INFO, "resuming run " + opt_.meta.run_id + " at _step " + std::to_string(starting_step_));
}

void WandbLogger::append_history_line(std::string& body, std::int64_t offset, const std::string& line) {
  if (offset < shift_until_) wb::append_json_string(body, wb::shift_history_line(line, starting_step_, runtime_offset_));
  else wb::append_json_string(body, line);
}

void WandbLogger::post(const json::object& body) {
  api_->file_stream(run_->entity, run_->project, run_->run_id, json::serialize(body));
  last_post_ = Clock::now();
}

void WandbLogger::heartbeat() { post(json::object{{"complete", false}, {"failed", false}, {"dropped", 0}, {"uploaded", json::array{}}}); }

std::int64_t WandbLogger::wire(const Stream& s, std::int64_t local) const {
  return local + (&s == &history_ ? base_history_ : &s == &events_ ? base_events_ : base_output_);
}

// Post up to 10000 lines of each stream from memory, with the full summary. The body is written
// directly (each line escaped once into it) rather than through a JSON tree of copies.
void WandbLogger::post_lines() {
  std::string& body = post_body_;
  body.clear();
  body += "{\"files\": {";
  auto chunk = [&](Stream& s, std::size_t max) -> std::size_t {
    std::size_t i = 0, bytes = 0;
    body += '"';
    body += s.file;
    body += "\": {\"offset\": ";
    wb::append_int(body, wire(s, s.mem_first));
    body += ", \"content\": [";
    for (; i < max && bytes < (8u << 20); ++i) {
      if (i) body += ", ";
      bytes += s.lines[i].size();
      if (&s == &history_) append_history_line(body, s.mem_first + static_cast<std::int64_t>(i), s.lines[i]);
      else wb::append_json_string(body, s.lines[i]);
    }
    body += "]}, ";
    return i;
  };
  std::size_t nh = std::min<std::size_t>(history_.lines.size(), 10000);
  std::size_t ne = std::min<std::size_t>(events_.lines.size(), 10000);
  if (nh) nh = chunk(history_, nh);
  if (ne) ne = chunk(events_, ne);
  std::size_t no = std::min<std::size_t>(output_.lines.size(), 10000);
  if (no) no = chunk(output_, no);
  body += "\"wandb-summary.json\": {\"offset\": 0, \"content\": [";
  wb::append_json_string(body, summary_text(false));
  body += "]}}, \"dropped\": 0}";
  api_->file_stream(run_->entity, run_->project, run_->run_id, body);
  last_post_ = Clock::now();
  auto pop = [](Stream& s, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) s.mem_bytes -= s.lines.front().size(), s.lines.pop_front(), ++s.mem_first;
  };
  pop(history_, nh);
  pop(events_, ne);
  pop(output_, no);
}

}  // namespace ember::wandb_plugin
