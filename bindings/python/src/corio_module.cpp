// _corio: corio's event loop core for Python (pybind11). bindings/python/corio/__init__.py
// builds asyncio's event loop on it; this file only carries callbacks, timers and descriptor
// watchers between asyncio's Handle objects and corio's loop.
// It must never run Python code without the GIL, never hold the GIL while the loop may block
// in the kernel (other threads would stall in call_soon_threadsafe), and never let a Python
// exception unwind through corio's loop: it is kept and raised when run_once returns.
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "corio/event_loop.hpp"
#include "corio/sock_ops.hpp"

namespace py = pybind11;

namespace {

// A strong reference that may be dropped on a thread that does not hold the GIL (corio
// destroys a callback wherever its loop lets it go). The callbacks below run inside
// run_once, on the loop's thread, which holds the GIL except inside the wait hooks.
class PyRef {
 public:
  explicit PyRef(py::object object) noexcept : object_(object.release().ptr()) {}
  PyRef(PyRef&& other) noexcept : object_(std::exchange(other.object_, nullptr)) {}
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  PyRef& operator=(PyRef&&) = delete;
  ~PyRef() {
    if (object_ == nullptr || !Py_IsInitialized()) return;  // at exit: leak, never crash
    if (PyGILState_Check()) {
      Py_DECREF(object_);
      return;
    }
    py::gil_scoped_acquire gil;
    Py_DECREF(object_);
  }
  PyObject* get() const noexcept { return object_; }

 private:
  PyObject* object_;
};

class Core {
 public:
  // Every iteration polls I/O, as asyncio's does: asyncio code may count on one iteration
  // seeing each event the kernel already has.
  // The GIL is held through the iteration and dropped only while the loop may block: other
  // threads need it then (to call call_soon_threadsafe), and callbacks need it always.
  Core() : loop_(corio::EventLoop::Options{.poll_every_iteration = true}) {
    loop_.set_wait_hooks([this] { waiting_thread_ = PyEval_SaveThread(); },
                         [this] { PyEval_RestoreThread(waiting_thread_); });
  }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  double time() const { return loop_.time(); }
  std::string backend_name() const { return std::string(corio::SelectedBackend::kName); }
  bool closed() const { return loop_.is_closed(); }
  std::size_t timer_count() const { return timers_.size(); }

  // An asyncio.Handle, run on the loop unless cancelled by then.
  void call_soon(py::object handle) {
    loop_.call_soon([this, ref = PyRef(std::move(handle))] { run_handle(ref.get()); });
  }

  void call_soon_threadsafe(py::object handle) {
    loop_.call_soon_threadsafe([this, ref = PyRef(std::move(handle))] { run_handle(ref.get()); });
  }

  // An asyncio.TimerHandle due at `when` (time()'s clock). Kept by identity so that
  // cancel_timer can take it off corio's timer heap at once.
  void call_at(double when, py::object timer) {
    PyObject* key = timer.ptr();
    corio::TimerHandle handle = loop_.call_at(when, [this, ref = PyRef(std::move(timer))] {
      static PyObject* const scheduled_name = PyUnicode_InternFromString("_scheduled");
      timers_.erase(ref.get());
      if (PyObject_SetAttr(ref.get(), scheduled_name, Py_False) < 0)
        return keep(py::error_already_set());
      run_handle(ref.get());
    });
    timers_.insert_or_assign(key, std::move(handle));
  }

  bool cancel_timer(py::handle timer) {
    auto it = timers_.find(timer.ptr());
    if (it == timers_.end()) return false;
    corio::TimerHandle handle = std::move(it->second);
    timers_.erase(it);
    handle.cancel();
    return true;
  }

  // Level-triggered watchers: `callback` (no arguments) runs once per loop iteration while
  // the descriptor stays ready. Adding again replaces the callback.
  void add_reader(int fd, py::object callback) {
    corio::add_reader(loop_, fd, watcher(std::move(callback)));
  }
  bool remove_reader(int fd) { return corio::remove_reader(loop_, fd); }
  void add_writer(int fd, py::object callback) {
    corio::add_writer(loop_, fd, watcher(std::move(callback)));
  }
  bool remove_writer(int fd) { return corio::remove_writer(loop_, fd); }

  // One iteration: wait for I/O (no longer than the next timer, not at all when `block` is
  // false or work is ready), fire due timers, run what is ready.
  void run_once(bool block) {
    if (!block) loop_.call_soon([] {});
    loop_.run_once();
    if (error_) {
      py::error_already_set error = std::move(*error_);
      error_.reset();
      throw error;
    }
  }

  void close() {
    timers_.clear();
    loop_.close();
  }

 private:
  corio::Callback watcher(py::object callback) {
    return [this, ref = PyRef(std::move(callback))] {
      PyObject* result = PyObject_CallNoArgs(ref.get());
      if (result == nullptr) return keep(py::error_already_set());
      Py_DECREF(result);
    };
  }

  // The C API with interned names: this runs once per callback, and pybind11's attr() would
  // build the name strings each time.
  void run_handle(PyObject* handle) {
    static PyObject* const cancelled_name = PyUnicode_InternFromString("_cancelled");
    static PyObject* const run_name = PyUnicode_InternFromString("_run");
    PyObject* cancelled = PyObject_GetAttr(handle, cancelled_name);
    if (cancelled == nullptr) return keep(py::error_already_set());
    const bool skip = cancelled == Py_True;
    Py_DECREF(cancelled);
    if (skip) return;
    // _run reports an Exception itself; only SystemExit and the like come out.
    PyObject* result = PyObject_CallMethodNoArgs(handle, run_name);
    if (result == nullptr) return keep(py::error_already_set());
    Py_DECREF(result);
  }

  // The first exception of an iteration is raised from run_once; a second one in the same
  // iteration can only be reported, as a callback's exception with nowhere to go.
  void keep(py::error_already_set&& e) {
    if (!error_) {
      error_.emplace(std::move(e));
      return;
    }
    e.restore();
    PyErr_WriteUnraisable(nullptr);
  }

  corio::EventLoop loop_;
  PyThreadState* waiting_thread_ = nullptr;  // while the wait hooks have the GIL dropped
  absl::flat_hash_map<PyObject*, corio::TimerHandle> timers_;
  std::optional<py::error_already_set> error_;
};

}  // namespace

PYBIND11_MODULE(_corio, m) {
  m.doc() = "corio's event loop core; use the corio package, not this module";
  py::class_<Core>(m, "Core")
      .def(py::init<>())
      .def("time", &Core::time)
      .def_property_readonly("backend", &Core::backend_name)
      .def_property_readonly("closed", &Core::closed)
      .def_property_readonly("timer_count", &Core::timer_count)
      .def("call_soon", &Core::call_soon)
      .def("call_soon_threadsafe", &Core::call_soon_threadsafe)
      .def("call_at", &Core::call_at)
      .def("cancel_timer", &Core::cancel_timer)
      .def("add_reader", &Core::add_reader)
      .def("remove_reader", &Core::remove_reader)
      .def("add_writer", &Core::add_writer)
      .def("remove_writer", &Core::remove_writer)
      .def("run_once", &Core::run_once, py::arg("block") = true)
      .def("close", &Core::close);
}
