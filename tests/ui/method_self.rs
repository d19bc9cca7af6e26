use supervised::supervised;

struct Poller;

impl Poller {
    #[supervised]
    async fn poll(&self) {}
}

fn main() {}
