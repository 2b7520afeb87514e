// llm_gather: seed 004's simulated LLM / search / database calls. Awaited one after another
// they take the sum of their delays (2 + 1 + 3 = 6 s); gathered they run concurrently and take
// the longest one (3 s). Then the LangGraph-style pipeline: an LLM node (1.5 s) and a search
// node (1 s) gathered, then a synthesis node (0.5 s): 2 s in all.
#include <corio/corio.hpp>

#include <cstdio>
#include <string>

namespace {

// Simulates an LLM API call.
corio::Coro<std::string> simulate_llm_call(std::string prompt) {
  std::printf("🤖 开始处理: %s\n", prompt.c_str());
  co_await corio::sleep(2);  // the network latency
  std::printf("✅ 处理完成: %s\n", prompt.c_str());
  co_return "回答: " + prompt + " 的响应";
}

// Simulates a database query.
corio::Coro<std::string> simulate_database_query(std::string query) {
  std::printf("🗄️ 开始查询: %s\n", query.c_str());
  co_await corio::sleep(1);  // the query time
  std::printf("✅ 查询完成: %s\n", query.c_str());
  co_return "查询结果: " + query;
}

// Simulates an external API call.
corio::Coro<std::string> call_external_api(std::string request) {
  std::printf("🌐 开始请求: %s\n", request.c_str());
  co_await corio::sleep(3);
  std::printf("✅ 请求完成: %s\n", request.c_str());
  co_return "外部响应: " + request;
}

void print_results(const std::string& a, const std::string& b, const std::string& c) {
  std::printf("['%s', '%s', '%s']\n", a.c_str(), b.c_str(), c.c_str());
}

// Sequential: slow.
corio::Coro<void> sequential_example() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start_time = loop.time();
  std::string result1 = co_await simulate_llm_call("什么是 AI？");
  std::string result2 = co_await simulate_database_query("用户信息");
  std::string result3 = co_await call_external_api("请求1");
  std::printf("⏱️ 串行执行耗时: %.2f 秒\n", loop.time() - start_time);
  print_results(result1, result2, result3);
}

// Concurrent: fast.
corio::Coro<void> concurrent_example() {
  corio::EventLoop& loop = corio::get_running_loop();
  const double start_time = loop.time();
  // Start every call at once, then wait for all of them.
  auto [result1, result2, result3] =
      co_await corio::gather(simulate_llm_call("什么是 AI？"), simulate_database_query("用户信息"),
                             call_external_api("请求1"));
  std::printf("⏱️ 并发执行耗时: %.2f 秒\n", loop.time() - start_time);
  print_results(result1, result2, result3);
}

struct ChatState {
  std::string user_input;
  std::string llm_response;
  std::string search_results;
  std::string final_answer;
};

// The LLM node: generates a response.
corio::Coro<ChatState> llm_node(ChatState state) {
  co_await corio::sleep(1.5);  // the network latency
  state.llm_response = "LLM 回答: 关于 '" + state.user_input + "' 的回答";
  co_return state;
}

// The search node.
corio::Coro<ChatState> search_node(ChatState state) {
  co_await corio::sleep(1);  // the search latency
  state.search_results = "搜索结果: 找到关于 '" + state.user_input + "' 的相关信息";
  co_return state;
}

// The synthesis node: combines the LLM's response and the search results.
corio::Coro<ChatState> synthesis_node(ChatState state) {
  co_await corio::sleep(0.5);  // the processing time
  state.final_answer = "综合回答:\n    - LLM 观点: " + state.llm_response +
                       "\n    - 搜索补充: " + state.search_results;
  co_return state;
}

corio::Coro<void> parallel_processing_example() {
  corio::EventLoop& loop = corio::get_running_loop();
  ChatState initial_state{"什么是机器学习？", "", "", ""};

  // Run the LLM and the search concurrently.
  std::printf("🚀 开始并发处理...\n");
  const double start_time = loop.time();
  auto [llm_result, search_result] =
      co_await corio::gather(llm_node(initial_state), search_node(initial_state));

  // Merge the results.
  ChatState merged_state{initial_state.user_input, llm_result.llm_response,
                         search_result.search_results, ""};

  // The final synthesis.
  ChatState final_state = co_await synthesis_node(merged_state);
  std::printf("⏱️ 总耗时: %.2f 秒\n", loop.time() - start_time);
  std::printf("📝 最终结果: %s\n", final_state.final_answer.c_str());
}

corio::Coro<void> amain() {
  std::printf("=== 串行执行 ===\n");
  co_await sequential_example();

  std::printf("\n=== 并发执行 ===\n");
  co_await concurrent_example();

  std::printf("\n=== LangGraph 并发节点 ===\n");
  co_await parallel_processing_example();
}

}  // namespace

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
