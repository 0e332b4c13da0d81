Rails.application.routes.draw do
  post "/writes", to: "writes#create"
  get "/writes", to: "writes#show"

  # The app's own auth, as small as it gets (Devise is not installed here): a routing constraint,
  # as Devise's `authenticate` block is, and the dashboard's authorize hook answering 403.
  admin = ->(request) { request.get_header("HTTP_X_ADMIN_TOKEN") == "let-me-in" }
  constraints(admin) do
    mount VFSReplication::Dashboard.new(authorize: admin), at: "/admin/replication"
  end
  mount VFSReplication::Dashboard.new(authorize: admin), at: "/ops/replication"

  # Without the app's auth: HTTP Basic from the credentials' dashboard_username/dashboard_password.
  mount VFSReplication::Dashboard, at: "/replication"
end
