use supervised::supervised;

#[supervised]
async fn impl_arg(source: impl Iterator<Item = u8> + Clone + Send + 'static) {
    let _ = source;
}

fn main() {}
