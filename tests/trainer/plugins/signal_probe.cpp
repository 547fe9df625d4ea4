// A callbacks plugin for the signal tests: it tells the test when the run has reached a step and
// holds the training thread there until the test says go, through named pipes (a handshake, no
// sleeps); it records on_exception and teardown in a file, and can block inside on_exception so
// that a test can send the second signal while the cleanup is running.
//
// Config (every key optional):
//   at_step         the global_step at which on_train_batch_end hands over (default 5)
//   hand_over_in    "on_train_batch_end" (default) or "on_fit_end": after the last batch instead
//   reached_fifo    written "reached N\n" at that step (opening it waits for the test to read)
//   resume_fifo     then read until the test writes a byte: the test signals first, then writes
//   events_file     appended "on_exception: MESSAGE\n" and "teardown\n"
//   exception_fifo  in on_exception, written "on_exception\n" ...
//   hold_fifo       ... then opened for reading, which blocks until the process is killed
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_config.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

namespace {

constexpr const char* kId = "signal_probe";

void write_all(const std::string& path, const std::string& text, int flags) {
  int fd = ::open(path.c_str(), flags | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(std::string(kId) + ": cannot open " + path + ": " + std::strerror(errno));
  for (std::size_t done = 0; done < text.size();) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw std::runtime_error(std::string(kId) + ": cannot write " + path + ": " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

// Opens path for reading and reads until one byte or end of file.
void wait_for_byte(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string(kId) + ": cannot open " + path + ": " + std::strerror(errno));
  char c;
  while (::read(fd, &c, 1) < 0 && errno == EINTR) {
  }
  ::close(fd);
}

class SignalProbe : public ember::plugin::Plugin, public ember::plugin::Callbacks {
 public:
  SignalProbe(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
    const ember::plugin::Config cfg(config_json, kId);
    at_step_ = cfg.integer("at_step", 5, 1);
    at_fit_end_ = cfg.one_of("hand_over_in", "on_train_batch_end", {"on_train_batch_end", "on_fit_end"}) == "on_fit_end";
    reached_ = cfg.optional_string("reached_fifo");
    resume_ = cfg.optional_string("resume_fifo");
    events_ = cfg.optional_string("events_file");
    exception_ = cfg.optional_string("exception_fifo");
    hold_ = cfg.optional_string("hold_fifo");
  }

  void on_train_batch_end(const ember_hook_args_t& a) override {
    if (!at_fit_end_ && a.global_step == at_step_) hand_over(a);
  }
  void on_fit_end(const ember_hook_args_t& a) override {
    if (at_fit_end_) hand_over(a);
  }
  void on_exception(const ember_hook_args_t& a) override {
    if (events_) write_all(*events_, "on_exception: " + std::string(ember::plugin::view(a.message)) + "\n", O_CREAT | O_APPEND);
    if (exception_) write_all(*exception_, "on_exception\n", 0);
    if (hold_) wait_for_byte(*hold_);
  }
  void teardown(const ember_hook_args_t&) override {
    if (events_) write_all(*events_, "teardown\n", O_CREAT | O_APPEND);
  }

 private:
  void hand_over(const ember_hook_args_t& a) {
    if (handed_over_) return;
    handed_over_ = true;
    if (reached_) write_all(*reached_, "reached " + std::to_string(a.global_step) + "\n", 0);
    if (resume_) wait_for_byte(*resume_);
  }

  std::int64_t at_step_ = 5;
  bool at_fit_end_ = false, handed_over_ = false;
  std::optional<std::string> reached_, resume_, events_, exception_, hold_;
};

}  // namespace

EMBER_PLUGIN(SignalProbe, "signal_probe", "0.1.0", "test callbacks: hands over at a step through named pipes",
             R"({"type":"object","additionalProperties":false,"properties":{
                 "at_step":{"type":"integer","minimum":1,"default":5},
                 "hand_over_in":{"enum":["on_train_batch_end","on_fit_end"],"default":"on_train_batch_end"},
                 "reached_fifo":{"type":"string"},"resume_fifo":{"type":"string"},
                 "events_file":{"type":"string"},"exception_fifo":{"type":"string"},
                 "hold_fifo":{"type":"string"}}})")
