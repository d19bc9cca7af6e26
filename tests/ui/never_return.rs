use supervised::supervised;

#[supervised]
async fn forever() -> ! {
    loop {
        tokio::task::yield_now().await;
    }
}

fn main() {}
