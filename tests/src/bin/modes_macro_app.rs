//! `#[taskscope::main]` and then `init()` in its body (the README's two
//! one-line embeds, both): the second is refused, said once on stderr, and
//! `try_init()` returns the error. Prints `init active: BOOL`, `try_init:
//! TEXT`, `probe seen: BOOL` (the hooks still see tasks).

#[taskscope::main(worker_threads = 2)]
async fn main() {
    let first = taskscope::init();
    let again = taskscope::init();
    println!("init active: {}", first.is_active() || again.is_active());
    match taskscope::try_init() {
        Ok(_) => println!("try_init: ok"),
        Err(err) => println!("try_init: {err}"),
    }
    tokio::spawn(async {}).await.unwrap(); // SPAWN-PROBE
    // The join handle can wake before the worker has recorded the end: wait a little.
    let seen = || {
        taskscope::finished_tasks()
            .iter()
            .any(|f| f.task.spawned_at.to_string().contains("modes_macro_app.rs"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    println!("probe seen: {}", seen());
}
