use std::rc::Rc;
use supervised::supervised;

#[supervised]
async fn local_error() -> Result<(), Rc<str>> {
    Err(Rc::from("not Send"))
}

fn main() {}
