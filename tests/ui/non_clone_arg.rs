use std::rc::Rc;

use supervised::supervised;

struct Connection;

#[supervised]
async fn uses(conn: Connection, shared: Rc<u32>) {
    let _ = (conn, shared);
}

fn main() {}
