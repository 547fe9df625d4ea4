// Console capture (wandb_console.hpp) into the run's output.log: the training thread starts it
// with the run and stops it in finish(); the worker takes the lines, which become file_stream
// "output.log" lines (online, and the run file output.log up to kConsoleLogMax) or OutputRawRecords
// (offline).
#include "logger.hpp"
#include "wandb_json.hpp"
#include "wandb_safety.hpp"

namespace ember::wandb_plugin {

// The training thread starts it with the run and stops it in finish(); the worker takes the lines.
void WandbLogger::start_console() {
  if (opt_.console_mode == "off") return;
  wb::ConsoleCapture::Options co;
  co.max_queue_bytes = opt_.max_queue_bytes;
  std::string why;
  console_ = wb::ConsoleCapture::start(co, why);
  if (!console_) say(opt_.console_mode == "redirect" ? EMBER_LOG_WARN : EMBER_LOG_INFO, "console not captured: " + why);
}

// Lines become file_stream "output.log" lines (online) or OutputRawRecords (offline); online,
// their text is also kept for the run file output.log, up to kConsoleLogMax.
void WandbLogger::take_console() {
  console_lines_.clear();
  console_->take(console_lines_);
  for (auto& l : console_lines_) {
    l.text = wb::strip_query_strings(l.text);  // a pre-signed URL printed by anyone stays out of W&B
    if (opt_.offline) {
      write_record(wb::output_raw_record(l));
      continue;
    }
    output_.push(wb::console_wire_line(l));
    if (console_log_.size() + l.text.size() < kConsoleLogMax) console_log_.append(l.text).push_back('\n');
    else console_log_cut_ = true;
  }
}

void WandbLogger::report_console() {
  if (!console_) return;
  if (auto d = console_->dropped_lines())
    log(EMBER_LOG_WARN, "console: " + std::to_string(d) + " of " + std::to_string(console_->captured_lines()) +
                            " captured lines dropped (not sent to W&B; the terminal got them): they came faster than the "
                            "worker took them, past max_queue_mb=" + wb::number_text(static_cast<double>(opt_.max_queue_bytes) / (1 << 20)));
  if (console_log_cut_)
    log(EMBER_LOG_WARN, "console: the run file output.log stops at " + std::to_string(kConsoleLogMax >> 20) +
                            " MiB; file_stream carried every line");
}

}  // namespace ember::wandb_plugin
