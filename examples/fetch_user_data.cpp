// fetch_user_data: seed 004's exercise. A user's basic info (1 s), preferences (0.5 s) and
// history (2 s) come from three sources; fetched concurrently with gather, whose results have
// three different types, the whole takes 2 s (the slowest source), not 3.5 s.
#include <corio/corio.hpp>

#include <cstdio>
#include <string>

namespace {

struct BasicInfo {
  std::string name;
  int age;
};
struct Preferences {
  std::string theme;
  std::string language;
};
struct History {
  std::string last_login;
  int login_count;
};
struct UserData {
  std::string user_id;
  BasicInfo basic_info;
  Preferences preferences;
  History history;
};

corio::Coro<BasicInfo> get_basic_info() {
  co_await corio::sleep(1);
  co_return BasicInfo{"Alice", 25};
}

corio::Coro<Preferences> get_preferences() {
  co_await corio::sleep(0.5);
  co_return Preferences{"dark", "zh"};
}

corio::Coro<History> get_history() {
  co_await corio::sleep(2);
  co_return History{"2024-01-01", 42};
}

// Fetches the user's data from every source concurrently.
corio::Coro<UserData> fetch_user_data(std::string user_id) {
  auto [basic, prefs, history] =
      co_await corio::gather(get_basic_info(), get_preferences(), get_history());
  co_return UserData{std::move(user_id), std::move(basic), std::move(prefs), std::move(history)};
}

corio::Coro<void> test_fetch_user_data() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start = loop.time();
  UserData data = co_await fetch_user_data("user123");
  const double end = loop.time();
  std::printf("获取数据耗时: %.2f 秒\n", end - start);
  // The dict as Python prints it.
  std::printf(
      "数据: {'user_id': '%s', 'basic_info': {'name': '%s', 'age': %d}, 'preferences': {'theme': "
      "'%s', "
      "'language': '%s'}, 'history': {'last_login': '%s', 'login_count': %d}}\n",
      data.user_id.c_str(), data.basic_info.name.c_str(), data.basic_info.age,
      data.preferences.theme.c_str(), data.preferences.language.c_str(),
      data.history.last_login.c_str(), data.history.login_count);
}

}  // namespace

int main() {
  corio::run(test_fetch_user_data());
}
