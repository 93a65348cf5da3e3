pub mod sessions;
pub mod team_members;
pub mod teams;
pub mod tenant_members;
pub mod tenants;
pub mod users;
