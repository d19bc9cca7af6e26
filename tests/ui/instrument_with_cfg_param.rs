use supervised::supervised;

#[supervised]
#[tracing::instrument]
async fn worker(#[cfg(any())] gone: u8, port: u16) {
    let _ = port;
}

fn main() {}
