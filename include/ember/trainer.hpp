// ember::Trainer — Lightning's Trainer: fit / validate / test / predict with its hook order.
//
// Hooks run callbacks first, in registration order, then the module (on_load_checkpoint: the
// module first). Plugins reach the trainer through the host table (Services): metrics, state,
// stop requests, storage and save_checkpoint.
//
// The parts: trainer/options.hpp (TrainerOptions and the plugin slots), trainer/checkpoint.hpp
// (checkpoint state), trainer/fit_loop.hpp (fit), trainer/eval_loops.hpp (validate, test, predict);
// this header is the class with its entry points, hook dispatch and the Services it offers plugins.
#pragma once

#include <ember/trainer/options.hpp>

namespace ember {

class Trainer : public Services, public MediaSink {
 public:
  Trainer(TrainerOptions options, Module& module) : opt_(std::move(options)), module_(module) {
    module_.attach(&metrics_);
    module_.attach_media(this);
  }
  ~Trainer() override {
    if (module_.media_sink() == this) module_.attach_media(nullptr);
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainerOptions& options() { return opt_; }
  HookRegistry& registry() { return registry_; }
  MetricStore& metrics() { return metrics_; }
  std::int64_t current_epoch() const { return epoch_; }
  std::int64_t global_step() const { return global_step_; }
  bool should_stop() const { return should_stop_; }
  std::string stop_reason() const { return stop_reason_; }

  // Data parallel (include/ember/distributed.hpp; null: one process). Set before plugins are
  // added: loggers and media are kept on rank 0 only, and plugins read the rank at creation.
  void set_distributed(Distributed* d) {
    dist_ = d;
    metrics_.set_sync(d ? &Trainer::sync_metrics : nullptr, this);
  }
  Distributed* distributed() const { return dist_; }
  bool is_global_zero() const { return !dist_ || dist_->is_global_zero(); }

  // Add an in-process callback (Lightning's Trainer(callbacks=[...])). It must outlive fit.
  template <class T>
  void add_callback(T& cb, std::string name) {
    registry_.add(cb, std::move(name));
  }
  // Add a loaded plugin instance: its hooks, logger and state. The instance must outlive fit.
  void add_plugin(PluginInstance& p) {
    p.register_hooks(registry_);
    // Loggers act on rank zero only (Lightning's rank_zero_only): the others keep no logger.
    if (auto* lg = is_global_zero() ? p.interface<ember_logger_v1_t>(EMBER_LOGGER_V1) : nullptr)
      loggers_.push_back({p.id(), lg, p.self(), p.library().entry().last_error});
    if (auto* st = p.interface<ember_state_v1_t>(EMBER_STATE_V1))
      stateful_.push_back({p.id(), st, p.self(), p.library().entry().last_error});
    if (auto* m = is_global_zero() ? p.interface<ember_media_v1_t>(EMBER_MEDIA_V1) : nullptr)
      media_.emplace_back(p.id(), *m, p.self(), p.library().entry().last_error);
  }

  // Add a logger table directly (an in-process logger written against ember.logger/1).
  void add_logger(LoggerSlot slot) { loggers_.push_back(std::move(slot)); }
  // Add a media table directly (an in-process logger written against ember.media/1).
  void add_media(MediaSlot slot) { media_.push_back(std::move(slot)); }

  // --- MediaSink: the module's log_image / log_table / watch --------------------------------
  // Checked here whether or not a logger takes media, so a bad image fails the same way in every
  // configuration; then handed to each logger offering the call, in registration order.
  void log_images(std::string_view key, const std::vector<Image>& images) override {
    if (images.empty()) throw std::invalid_argument("log_image '" + std::string(key) + "': no images");
    std::deque<TensorView> views;  // element addresses stay put: the DLTensors point into them
    std::vector<ember_image_t> items(images.size());
    for (std::size_t i = 0; i < images.size(); ++i) {
      const Image& im = images[i];
      ember_image_t& it = items[i];
      it.caption = cstr(im.caption);
      if (im.tensor.defined()) {
        torch::Tensor t = im.tensor.detach();
        if (t.is_floating_point() && t.scalar_type() != torch::kFloat && t.scalar_type() != torch::kDouble)
          t = t.to(torch::kFloat);  // half, bfloat16: W&B upconverts them too
        it.tensor = &views.emplace_back(t).dl;
        media::check_image(*it.tensor, key, i);
      } else {
        static const char kSignature[] = "\x89PNG\r\n\x1a\n";
        if (im.png.size() < 8 || std::memcmp(im.png.data(), kSignature, 8) != 0)
          throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) +
                                      " has neither a tensor nor PNG bytes (no PNG signature); expected a tensor (" +
                                      media::kImageShapes + ") or an encoded PNG file");
        it.png = im.png.data();
        it.png_size = im.png.size();
      }
    }
    ember_log_context_t ctx = media_context(global_step_);
    for (auto& m : media_)
      if (m.table.log_image)
        media_call(m, "log_image", key, m.table.log_image(m.self, &ctx, cstr(key), items.data(), items.size()));
  }

  void log_table(std::string_view key, const std::vector<std::string>& columns, const TableRows& data) override {
    const std::string k(key);
    if (columns.empty()) throw std::invalid_argument("log_table '" + k + "': no columns");
    boost::json::array cols;
    for (const auto& c : columns) cols.emplace_back(c);
    boost::json::array rows;
    for (std::size_t r = 0; r < data.size(); ++r) {
      if (data[r].size() != columns.size())
        throw std::invalid_argument("log_table '" + k + "': row " + std::to_string(r) + " has " +
                                    std::to_string(data[r].size()) + " values; expected " +
                                    std::to_string(columns.size()) + ", one per column");
      rows.emplace_back(boost::json::array(data[r].begin(), data[r].end()));
    }
    if (media_.empty()) return;
    const std::string cj = boost::json::serialize(cols), rj = boost::json::serialize(rows);
    ember_log_context_t ctx = media_context(global_step_);
    for (auto& m : media_)
      if (m.table.log_table) media_call(m, "log_table", key, m.table.log_table(m.self, &ctx, cstr(key), cstr(cj), cstr(rj)));
  }

  void watch(const WatchOptions& w) override {
    if (w.log != "gradients" && w.log != "parameters" && w.log != "all")
      throw std::invalid_argument("watch: log='" + w.log + "'; expected \"gradients\", \"parameters\" or \"all\"");
    if (w.log_freq < 1) throw std::invalid_argument("watch: log_freq=" + std::to_string(w.log_freq) + "; expected >= 1");
    watch_grads_ = w.log != "parameters";
    watch_params_ = w.log != "gradients";
    watch_freq_ = w.log_freq;
    watch_set_ = true;
  }
  void unwatch() override {
    watch_freq_ = 0;
    watch_set_ = true;
  }

  void set_data(data::Loader* train, data::Loader* val, data::Loader* test, data::Loader* predict) {
    train_ = train, val_ = val, test_ = test, predict_ = predict;
  }

  // --- the four entry points -------------------------------------------------------------
  void fit(const std::string& ckpt_path = "") {
    run(EMBER_STAGE_FIT, [&] { fit_impl(ckpt_path); });
  }
  void validate(const std::string& ckpt_path = "") {
    run(EMBER_STAGE_VALIDATE, [&] {
      if (!ckpt_path.empty()) restore(ckpt_path, /*weights_only=*/true);
      eval_loop(EMBER_STAGE_VALIDATE, val_, limit(opt_.limit_val_batches, val_), false);
    });
  }
  void test(const std::string& ckpt_path = "") {
    run(EMBER_STAGE_TEST, [&] {
      if (!ckpt_path.empty()) restore(ckpt_path, true);
      eval_loop(EMBER_STAGE_TEST, test_, limit(opt_.limit_test_batches, test_), false);
    });
  }
  std::vector<torch::Tensor> predict(const std::string& ckpt_path = "") {
    std::vector<torch::Tensor> out;
    run(EMBER_STAGE_PREDICT, [&] {
      if (!ckpt_path.empty()) restore(ckpt_path, true);
      out = predict_loop();
    });
    return out;
  }

  // Epoch-level metrics of the last validate/test run (Lightning's returned dicts).
  const std::vector<MetricValue>& last_eval_metrics() const { return last_eval_; }

  // --- checkpoints --------------------------------------------------------------------------
  // The checkpoint as a dict with Lightning's keys (tensors are views of the live state).
  torch::IValue checkpoint_value(bool weights_only);

  void save_checkpoint(const std::string& url, bool weights_only) override {
    args_.url = cstr(url);
    dispatch(EMBER_HOOK_ID_on_save_checkpoint);
    args_.url = {};
    // Rank 0 writes (every rank holds the same model); the others wait for it, as Lightning's
    // strategy.save_checkpoint + barrier, so that no rank reads a checkpoint not yet written.
    if (is_global_zero()) {
      // Streamed into an atomic writer: a crash leaves the previous object under url.
      auto writer = urls().open_write(url);
      ckpt::write_pickle(checkpoint_value(weights_only), *writer);
      writer->commit();
      for (auto& lg : loggers_)
        if (lg.table->after_save_checkpoint) logger_call(lg, "after_save_checkpoint", lg.table->after_save_checkpoint(lg.self, cstr(url)));
    }
    if (dist_) dist_->barrier("save_checkpoint " + url);
  }

  // Restore from url: weights always; optimizer, schedulers, plugin state, loop position and
  // RNG unless weights_only.
  void restore(const std::string& url, bool weights_only);

  // --- Services: what plugins see through the host table ---------------------------------
  void fill_state(ember_trainer_state_t& s) override {
    s.stage = sanity_ ? EMBER_STAGE_SANITY_CHECK : stage_;
    s.fn = fn_;
    s.num_test_batches = test_ ? dev_limit(limit(opt_.limit_test_batches, test_)) : -1;
    s.num_predict_batches = predict_ ? dev_limit(limit(opt_.limit_predict_batches, predict_)) : -1;
    s.epoch = epoch_;
    s.global_step = global_step_;
    s.max_epochs = max_epochs();
    s.max_steps = opt_.max_steps;
    s.num_training_batches = train_ ? dev_limit(limit(opt_.limit_train_batches, train_)) : -1;
    s.num_val_batches = val_ ? dev_limit(limit(opt_.limit_val_batches, val_)) : -1;
    s.sanity_checking = sanity_;
    s.should_stop = should_stop_;
    s.default_root_dir = cstr(opt_.default_root_dir);
  }
  std::optional<double> metric(std::string_view name) override { return metrics_.get(name); }
  void for_each_metric(const std::function<bool(std::string_view, double)>& fn) override {
    metrics_.for_each(fn);
  }
  void for_each_progress_metric(const std::function<bool(std::string_view, double)>& fn) override {
    std::vector<MetricValue> values;
    metrics_.prog_bar(values);
    for (const auto& v : values)
      if (!fn(v.name, v.value)) return;
  }
  RankInfo rank_info() override {
    return dist_ ? RankInfo{dist_->global_rank(), dist_->local_rank(), dist_->world_size()} : RankInfo{};
  }
  void barrier() override {
    if (dist_) dist_->barrier("plugin barrier");
  }
  void broadcast(void* data, std::size_t size, int root) override {
    if (dist_) dist_->broadcast(data, size, root);
  }
  void all_reduce(double* values, std::size_t n, ReduceOp op) override {
    if (!dist_) return;
    std::vector<double> v(values, values + n);
    dist_->all_reduce(v, op);
    std::copy(v.begin(), v.end(), values);
  }

  void request_stop(const std::string& who, std::string_view reason) override {
    should_stop_ = true;
    stop_reason_ = who + ": " + std::string(reason);
  }

  // Stop the running loop as after signal signo (include/ember/signals.hpp): at the next batch
  // boundary of any loop, through on_exception, loggers finalized "interrupted", teardown, then
  // Interrupted is thrown out of fit/validate/test/predict. Async-signal-safe and callable from
  // any thread: for an application that owns its signal handlers (a StopOnSignals guard is the
  // ready-made alternative; the trainer honours both).
  void request_interrupt(int signo) noexcept { interrupt_.store(signo, std::memory_order_relaxed); }

  // End fit at the first training batch boundary at or after `at` (an AWS Lambda invocation's
  // deadline minus a margin), the way max_steps ends it: not a failure. The epoch ends there
  // (on_train_epoch_end runs, so model_checkpoint saves the mid-epoch position, which
  // ckpt_path resumes exactly), then on_train_end, on_fit_end, loggers finalize "success".
  // Checked after each training batch and its validation only, so every fit call trains at
  // least one batch: a chain of invocations that resume from "last" always progresses, even
  // when loading took the whole budget. nullopt: no deadline.
  // The same deadline also ends a validation or test loop (fit's own validation but not the
  // sanity check, validate(), test()) at the first evaluation batch boundary past it, after at
  // least one batch: the epoch-end metrics cover the batches that ran, eval_cut() says how many
  // of how many, and a fit then ends as above (a cut validation is not repeated on resume).
  void set_fit_deadline(std::optional<std::chrono::steady_clock::time_point> at) { deadline_ = at; }
  bool stopped_by_deadline() const { return stopped_by_deadline_; }
  struct EvalCut {
    ember_stage_t stage;
    std::int64_t batches, of;
  };
  const std::optional<EvalCut>& eval_cut() const { return eval_cut_; }

 private:
  struct Stateful {
    std::string id;
    const ember_state_v1_t* table;
    void* self;
    ember_str_t (*last_error)(void*);
  };

  // sync_dist: MetricStore hands the values to reduce across ranks.
  static void sync_metrics(void* self, std::vector<double>& values, Reduce op) {
    auto* t = static_cast<Trainer*>(self);
    t->dist_->all_reduce(values, op == Reduce::sum ? ReduceOp::sum
                                 : op == Reduce::max ? ReduceOp::max
                                 : op == Reduce::min ? ReduceOp::min
                                                     : ReduceOp::mean);
  }
  // A stop any rank asked for (EarlyStopping, a plugin) stops every rank at the same epoch end.
  void sync_should_stop() {
    std::vector<double> v{should_stop_ ? 1.0 : 0.0};
    dist_->all_reduce(v, ReduceOp::max);
    if (v[0] > 0 && !should_stop_) {
      should_stop_ = true;
      stop_reason_ = "another rank requested a stop";
    }
  }

  std::int64_t max_epochs() const {
    if (opt_.fast_dev_run) return 1;
    if (opt_.max_epochs >= 0) return opt_.max_epochs;
    return opt_.max_steps >= 0 ? -1 : 1000;
  }

  static std::int64_t limit(const TrainerOptions::Limit& lim, const data::Loader* l) {
    if (!l) return 0;
    std::int64_t n = l->num_batches();
    if (!lim.is_count) return static_cast<std::int64_t>(std::floor(std::min(1.0, lim.value) * static_cast<double>(n)));
    return std::min<std::int64_t>(n, static_cast<std::int64_t>(lim.value));
  }
  std::int64_t dev_limit(std::int64_t n) const { return opt_.fast_dev_run ? std::min(n, opt_.fast_dev_run) : n; }

  bool past_deadline() {
    if (!deadline_ || std::chrono::steady_clock::now() < *deadline_) return false;
    stopped_by_deadline_ = should_stop_ = true;
    stop_reason_ = "deadline";
    return true;
  }

  // A pending stop signal (request_interrupt, or one a StopOnSignals guard caught) ends the run
  // here, at a batch boundary: nothing is torn mid-step. Two relaxed loads per batch.
  void check_interrupt() {
    int signo = interrupt_.load(std::memory_order_relaxed);
    if (signo == 0) signo = caught_stop_signal();
    if (signo == 0) return;
    should_stop_ = true;
    stop_reason_ = signal_name(signo) + " received";
    throw Interrupted(signo, signal_name(signo) + " received: stopped at global_step " + std::to_string(global_step_) +
                                 " (epoch " + std::to_string(epoch_) + ")");
  }

  void dispatch(ember_hook_id_t id) {
    if (id == EMBER_HOOK_ID_on_load_checkpoint) (module_.*hook_member(id))(args_);
    registry_.call(id, args_);
    if (id != EMBER_HOOK_ID_on_load_checkpoint) (module_.*hook_member(id))(args_);
  }

  // A tensor as a DLPack view of a CPU, compact copy (or of the tensor itself when it is one).
  struct TensorView {
    torch::Tensor t;
    std::vector<std::int64_t> shape;
    DLTensor dl{};
    explicit TensorView(const torch::Tensor& src) : t(src.to(torch::kCPU).contiguous()), shape(t.sizes().begin(), t.sizes().end()) {
      dl.data = t.data_ptr();
      dl.device = {kDLCPU, 0};
      dl.ndim = static_cast<int32_t>(t.dim());
      dl.dtype = dl_dtype(t.scalar_type());
      dl.shape = shape.data();
    }
    static DLDataType dl_dtype(torch::ScalarType s) {
      switch (s) {
        case torch::kByte: return {kDLUInt, 8, 1};
        case torch::kChar: return {kDLInt, 8, 1};
        case torch::kShort: return {kDLInt, 16, 1};
        case torch::kInt: return {kDLInt, 32, 1};
        case torch::kLong: return {kDLInt, 64, 1};
        case torch::kHalf: return {kDLFloat, 16, 1};
        case torch::kBFloat16: return {kDLBfloat, 16, 1};
        case torch::kFloat: return {kDLFloat, 32, 1};
        case torch::kDouble: return {kDLFloat, 64, 1};
        case torch::kBool: return {6, 8, 1};  // kDLBool in DLPack >= 0.8 (Debian ships 0.6)
        default: return {kDLOpaqueHandle, 0, 1};
      }
    }
  };

  ember_log_context_t media_context(std::int64_t step) const {
    return {sizeof(ember_log_context_t), sanity_ ? EMBER_STAGE_SANITY_CHECK : stage_, step, epoch_};
  }

  void media_call(const MediaSlot& m, const char* what, std::string_view key, ember_status_t rc) {
    if (rc == EMBER_OK) return;
    throw PluginFailure(plugin_failure(m.id, "logger " + std::string(what) + " '" + std::string(key) + "'", m.last_error, m.self, rc));
  }

  // watch: one histogram per named parameter (gradient and/or value) for the optimizer step
  // about to be taken, to every logger that takes histograms.
  void log_watch() {
    ember_log_context_t ctx = media_context(global_step_ + 1);
    std::string key;
    auto send = [&](const char* prefix, const std::string& name, const torch::Tensor& t) {
      key.assign(prefix).append(name);
      TensorView v(t.detach().to(torch::kFloat));
      for (auto& m : media_)
        if (m.table.log_histogram)
          media_call(m, "log_histogram", key, m.table.log_histogram(m.self, &ctx, cstr(key), &v.dl, 64));
    };
    for (auto& [name, p] : module_.named_parameters()) {
      if (watch_grads_ && p.grad().defined()) send("gradients/", name, p.grad());
      if (watch_params_) send("parameters/", name, p);
    }
  }

  void logger_call(const LoggerSlot& lg, const char* what, ember_status_t rc) {
    if (rc == EMBER_OK) return;
    throw PluginFailure(plugin_failure(lg.id, std::string("logger ") + what, lg.last_error, lg.self, rc));
  }

  void send_to_loggers(const std::vector<MetricValue>& values, ember_stage_t stage) {
    if (values.empty() || loggers_.empty()) return;
    metric_buf_.clear();
    for (const auto& v : values) metric_buf_.push_back({cstr(v.name), v.value});
    ember_log_context_t ctx{sizeof(ember_log_context_t), stage, global_step_, epoch_};
    for (auto& lg : loggers_)
      logger_call(lg, "log_metrics", lg.table->log_metrics(lg.self, &ctx, metric_buf_.data(), metric_buf_.size()));
  }

  // Run body inside setup/teardown; on failure: on_exception, loggers finalize "failed",
  // teardown, then rethrow (the host exits 1). A stop signal takes the same path (Interrupted;
  // loggers finalize "interrupted"; the host exits 128 + signo).
  template <class F>
  void run(ember_stage_t stage, F&& body) {
    stage_ = fn_ = stage;
    args_ = {};
    args_.struct_size = sizeof args_;
    args_.stage = stage;
    args_.batch_idx = -1;
    args_.optimizer_idx = -1;
    if (opt_.seed) torch::manual_seed(*opt_.seed);
    if (opt_.deterministic) at::globalContext().setDeterministicAlgorithms(true, false);
    try {
      dispatch(EMBER_HOOK_ID_setup);
      if (!hparams_sent_) {
        hparams_sent_ = true;
        std::string hp = module_.hparams_json();
        for (auto& lg : loggers_)
          if (lg.table->log_hyperparams) logger_call(lg, "log_hyperparams", lg.table->log_hyperparams(lg.self, cstr(hp)));
      }
      body();
      for (auto& lg : loggers_) {
        if (lg.table->save) logger_call(lg, "save", lg.table->save(lg.self));
      }
      dispatch(EMBER_HOOK_ID_teardown);
      for (auto& lg : loggers_)
        if (lg.table->finalize) logger_call(lg, "finalize", lg.table->finalize(lg.self, cstr("success")));
    } catch (const std::exception& e) {
      std::string what = e.what();
      args_.message = cstr(what);
      std::vector<std::string> more;
      for (auto& err : registry_.call_all(EMBER_HOOK_ID_on_exception, args_)) more.push_back(err.what());
      try {
        (module_.*hook_member(EMBER_HOOK_ID_on_exception))(args_);
      } catch (const std::exception& e2) {
        more.push_back(std::string("module: on_exception: ") + e2.what());
      }
      // A stop signal is not a failure of the run's code: loggers hear "interrupted" (the ABI's
      // word; Lightning says "failed" for both), the rest of the path is the same.
      const char* status = dynamic_cast<const Interrupted*>(&e) ? "interrupted" : "failed";
      for (auto& lg : loggers_)
        if (ember_status_t rc = lg.table->finalize ? lg.table->finalize(lg.self, cstr(status)) : EMBER_OK; rc != EMBER_OK)
          more.push_back(plugin_failure(lg.id, "logger finalize", lg.last_error, lg.self, rc));
      for (auto& err : registry_.call_all(EMBER_HOOK_ID_teardown, args_)) more.push_back(err.what());
      try {
        (module_.*hook_member(EMBER_HOOK_ID_teardown))(args_);
      } catch (const std::exception& e2) {
        more.push_back(std::string("module: teardown: ") + e2.what());
      }
      args_.message = {};
      for (auto& m : more) std::cerr << "ember: also: " << m << "\n";
      throw;
    }
  }

  void fit_impl(const std::string& ckpt_path);

  void train_batch(std::int64_t b, std::int64_t n_train, std::vector<MetricValue>& buf);

  void eval_loop(ember_stage_t stage, data::Loader* loader, std::int64_t n, bool sanity);

  std::vector<torch::Tensor> predict_loop();

  TrainerOptions opt_;
  Module& module_;
  HookRegistry registry_;
  MetricStore metrics_;
  std::vector<LoggerSlot> loggers_;
  std::vector<MediaSlot> media_;
  std::vector<Stateful> stateful_;
  std::vector<ember_metric_t> metric_buf_;
  std::vector<MetricValue> last_eval_;
  OptimizerConfig optim_;
  data::Loader *train_ = nullptr, *val_ = nullptr, *test_ = nullptr, *predict_ = nullptr;
  ember_hook_args_t args_{};
  ember_stage_t stage_ = EMBER_STAGE_NONE;
  ember_stage_t fn_ = EMBER_STAGE_NONE;  // the entry point running
  std::int64_t epoch_ = 0, global_step_ = 0, next_epoch_ = 0, next_batch_ = 0;
  std::int64_t accumulated_ = 0;
  bool sanity_ = false, should_stop_ = false, restored_ = false, hparams_sent_ = false;
  std::int64_t watch_freq_ = 0;  // 0: not watching
  bool watch_grads_ = false, watch_params_ = false, watch_set_ = false;
  std::string stop_reason_;
  std::atomic<int> interrupt_{0};  // request_interrupt's signal number, 0: none
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  bool stopped_by_deadline_ = false;
  std::optional<EvalCut> eval_cut_;
  Distributed* dist_ = nullptr;
};

}  // namespace ember

// The member functions defined out of the class, one part per responsibility.
#include <ember/trainer/checkpoint.hpp>
#include <ember/trainer/eval_loops.hpp>
#include <ember/trainer/fit_loop.hpp>
